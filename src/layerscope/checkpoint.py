"""The checkpoint format: what a layerscope checkpoint holds, and how it is written, read, checked
against the registered builders and upgraded from older versions. Training, resume, eval, predict
and export all go through this module.

A checkpoint is Lightning's (weights, optimizer and loop states, callbacks' states) with, under
``hyper_parameters``, what rebuilds the model and its preprocessing without the run folder:

- ``model_config``: the model's resolved config; its ``_target_`` is a registered builder;
- ``data_info``: ``name``, ``classes``, ``part_names``, ``in_channels``, ``image_size``,
  ``resize_size``, ``mean``, ``std`` (plain values, as the data module's ``info`` gives them);
- ``test_time_flip``, ``test_time_shift``: the test-time views the run tested with;

and at the top level ``layerscope_format``, the version of this layout, and ``layerscope_ood``, the
out-of-distribution thresholds calibrated on validation images for the weights it holds
(``layerscope.ood.Calibration``; absent from checkpoints written before calibration existed or
before the first validation pass). It is read with
``torch.load(weights_only=True)``: tensors and plain types only, so a file carrying a pickled
payload is refused before any of it runs.

Older versions are upgraded as they are read. Version 1 (unnumbered) checkpoints may name
builders by former names (``registry``), lack ``resize_size`` (they resized to the input size
itself) and lack the test-time views (they used none).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerscope import ood
from layerscope.errors import UserError
from layerscope.files import torch_bytes, write_atomically
from layerscope.models import build_model
from layerscope.models.adapted import without_pretrained
from layerscope.trust import current_targets, model_builders, trusted

FORMAT_VERSION = 2
FORMAT_KEY = "layerscope_format"
WEIGHTS_PREFIX = "model."  # the LightningModule holds the network as ``self.model``


def stamp(checkpoint: dict[str, Any]) -> None:
    """Mark a checkpoint being saved with this format's version (the LightningModule calls it)."""
    checkpoint[FORMAT_KEY] = FORMAT_VERSION


@dataclass(frozen=True)
class Checkpoint:
    """A layerscope checkpoint as read and upgraded; ``contents`` is the whole file as loaded."""

    path: Path
    contents: dict[str, Any]
    version: int
    model_config: dict[str, Any]  # current builder names; not yet checked against the registry
    data_info: dict[str, Any]
    test_views: dict[str, Any]  # test_time_flip, test_time_shift

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.contents["state_dict"]

    def ood_calibration(self) -> tuple[ood.Calibration | None, str | None]:
        """The out-of-distribution calibration of these weights, or None and one line saying why not."""
        saved = self.contents.get(ood.CHECKPOINT_KEY)
        calibration = ood.Calibration.from_dict(saved)
        no = f"{self.path} carries no out-of-distribution calibration"
        fix = f"in_distribution is null; python eval.py ckpt_path={self.path} calibrate=true adds one"
        if saved is None:
            return None, f"{no} (written before calibration existed, or before a validation pass): {fix}"
        if calibration is None:
            return None, f"{no} it can read (a malformed {ood.CHECKPOINT_KEY}): {fix}"
        step = self.contents.get("global_step")
        if step != calibration.step:
            return None, (f"{no} for its weights (saved at step {step}, the last validation pass was "
                          f"at step {calibration.step}): {fix}")
        return calibration, None

    def store_ood_calibration(self, calibration: ood.Calibration) -> ood.Calibration:
        """Write ``calibration`` into this checkpoint's file (atomically), dated to its weights' step."""
        dated = replace(calibration, step=int(self.contents.get("global_step", 0)))
        write_atomically(self.path, torch_bytes({**self.contents, ood.CHECKPOINT_KEY: dated.to_dict()}))
        return dated

    def trusted_model_config(self) -> dict[str, Any]:
        """The model config, once every builder it names is registered, without the pretrained
        weights it names: the checkpoint's own weights replace them, so they are not fetched."""
        checked = trusted(self.model_config, model_builders(), "model_config", str(self.path))
        return without_pretrained(checked)

    def load_weights(self, module: nn.Module, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Load ``weights`` (by default the whole state dict) into ``module``; a mismatch is the file's."""
        try:
            module.load_state_dict(self.state_dict if weights is None else weights)
        except RuntimeError as err:
            raise UserError(f"{self.path}: its weights do not fit its own model config: {err}") from err

    def model(self) -> nn.Module:
        """The trained network: built from the trusted config, its weights loaded."""
        model = build_model(self.trusted_model_config())
        weights = {k.removeprefix(WEIGHTS_PREFIX): v for k, v in self.state_dict.items()
                   if k.startswith(WEIGHTS_PREFIX)}
        self.load_weights(model, weights)
        return model

    def check_continues(self, model_config: dict[str, Any], data_info: dict[str, Any]) -> None:
        """A resume continues only the training that made it: the same model, classes and shapes."""
        resume = "resume with the overrides that started it"
        if self.model_config != model_config:
            raise UserError(
                f"{self.path} was trained with another model or data ({self.model_config.get('_target_')} "
                f"on {self.data_info.get('name')}): {resume}"
            )
        check_fits(self.data_info, data_info, resume)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint at ``path``, upgraded to this format, or a UserError saying in one line why it
    cannot be used."""
    path = Path(path).expanduser()
    contents = _load(path)
    hparams = contents.get("hyper_parameters", {}) if isinstance(contents, dict) else {}
    if not {"model_config", "data_info"} <= set(hparams) or "state_dict" not in contents:
        raise UserError(f"{path} is not a layerscope checkpoint (it has no model config or weights)")
    version = contents.get(FORMAT_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise UserError(f"{path} has checkpoint format {version!r}; this layerscope reads formats up to "
                        f"{FORMAT_VERSION}: upgrade layerscope to load it")
    if not isinstance(hparams["model_config"], dict) or not isinstance(hparams["data_info"], dict):
        raise UserError(f"{path}: its model_config or data_info is not a mapping "
                        "(not a layerscope checkpoint?)")
    return Checkpoint(path, contents, version, current_targets(hparams["model_config"]),
                      upgraded_data_info(hparams["data_info"], str(path)), _test_views(hparams, path))


def _load(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: pass ckpt_path=outputs/.../checkpoints/best.ckpt")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(
            f"{path} holds Python objects besides tensors and plain values, which could run code "
            "when loaded; it was refused (only layerscope checkpoints load here)"
        ) from err
    except Exception as err:  # torch.load fails in many ways on a damaged file: each is the file's fault
        raise UserError(f"{path} is not a readable checkpoint (truncated or corrupt?): {err}") from err


def upgraded_data_info(info: dict[str, Any], source: str) -> dict[str, Any]:
    """``info`` with what older versions lacked filled in; ``source`` names where it came from."""
    missing = [key for key in ("classes", "in_channels", "image_size", "mean", "std") if key not in info]
    if missing:
        raise UserError(f"{source}: its data_info lacks {', '.join(missing)} (not a layerscope checkpoint?)")
    # Checkpoints from before the evaluation resize existed resized to the input size itself.
    return {**info, "resize_size": info.get("resize_size") or info["image_size"]}


def _test_views(hparams: dict[str, Any], path: Path) -> dict[str, Any]:
    """The test-time views, as plain values: a bool and an integer; older checkpoints used none."""
    flip, shift = hparams.get("test_time_flip", False), hparams.get("test_time_shift", 0)
    if not isinstance(flip, bool) or isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise UserError(f"{path}: its test_time_flip={flip!r} or test_time_shift={shift!r} is not a "
                        "bool and an integer >= 0 (not a layerscope checkpoint?)")
    return {"test_time_flip": flip, "test_time_shift": shift}


def check_fits(trained_on: dict[str, Any], data_info: dict[str, Any], next_step: str) -> None:
    """The data (``data_info`` as a data module gives it) must have the checkpoint's image shape and
    classes (``trained_on``, its stored data info); else one line ending with ``next_step``."""
    def shape(info: dict[str, Any]) -> str:
        return "x".join(map(str, (info["in_channels"], info["image_size"], info["image_size"])))

    def classes(info: dict[str, Any]) -> str:
        return f"{len(info['classes'])} classes ({', '.join(info['classes'][:4])}, ...)"

    if shape(trained_on) != shape(data_info) or list(trained_on["classes"]) != list(data_info["classes"]):
        raise UserError(
            f"the checkpoint expects {shape(trained_on)} images of {classes(trained_on)}; "
            f"data={data_info['name']} has {shape(data_info)} images of {classes(data_info)}: {next_step}"
        )


def run_folder(ckpt_path: str | Path) -> Path:
    """The run folder that wrote a checkpoint: checkpoints live in ``<run folder>/checkpoints/``."""
    return Path(ckpt_path).expanduser().resolve().parent.parent

"""Load a checkpoint for inference: ``load_classifier(path).predict(images)``.

A checkpoint alone rebuilds its model and preprocessing: model config, class names, input
channels and size, normalisation. It is read with ``torch.load(weights_only=True)``: tensors and
plain types only, so a file carrying a pickled payload is refused before any of it runs. Its model
config is built only if it names the project's own model builders (see ``trust``).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerscope.data.augment import normalise
from layerscope.data.image_files import load_image
from layerscope.errors import UserError
from layerscope.inference.trust import model_builders, trusted
from layerscope.models import build_model
from layerscope.models.adapted import without_pretrained
from layerscope.models.layers import layer_hooks, named_layers

ImageLike = str | Path | torch.Tensor


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, or a UserError saying in one line why it cannot be used."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: pass ckpt_path=outputs/.../checkpoints/best.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(
            f"{path} holds Python objects besides tensors and plain values, which could run code "
            "when loaded; it was refused (only layerscope checkpoints load here)"
        ) from err
    except Exception as err:  # torch.load fails in many ways on a damaged file: each is the file's fault
        raise UserError(f"{path} is not a readable checkpoint (truncated or corrupt?): {err}") from err
    hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    if not {"model_config", "data_info"} <= set(hparams) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is not a layerscope checkpoint (it has no model config or weights)")
    return checkpoint


def run_folder(ckpt_path: str | Path) -> Path:
    """The run folder that wrote a checkpoint: checkpoints live in ``<run folder>/checkpoints/``."""
    return Path(ckpt_path).expanduser().resolve().parent.parent


def model_config(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The checkpoint's model config, once every builder it names is one of the project's own.

    Pretrained weights it names are not fetched again: the checkpoint's own weights replace them.
    """
    stored = checkpoint["hyper_parameters"]["model_config"]
    config = trusted(stored, model_builders(), "model_config", str(path))
    return without_pretrained(config)


def checkpoint_test_views(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The test-time views the training run tested with (the module's ``test_time_*`` settings).

    Read as plain values: a bool and an integer; checkpoints older than these settings used none.
    """
    hparams = checkpoint["hyper_parameters"]
    flip, shift = hparams.get("test_time_flip", False), hparams.get("test_time_shift", 0)
    if not isinstance(flip, bool) or isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise UserError(f"{path}: its test_time_flip={flip!r} or test_time_shift={shift!r} is not a "
                        "bool and an integer >= 0 (not a layerscope checkpoint?)")
    return {"test_time_flip": flip, "test_time_shift": shift}


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load a checkpoint's weights into the model its config built; a mismatch is the file's fault."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise UserError(f"{path}: its weights do not fit its own model config: {err}") from err


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


@dataclass
class Predictions:
    """Class probabilities for a batch, with the names of the classes."""

    probs: torch.Tensor  # (N, classes)
    classes: list[str]

    @property
    def indices(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    @property
    def labels(self) -> list[str]:
        return [self.classes[i] for i in self.indices.tolist()]

    def top_k(self, k: int) -> list[list[tuple[str, float]]]:
        """For each image, the ``k`` most likely classes with their probabilities."""
        values, indices = self.probs.topk(min(k, self.probs.shape[1]), dim=1)
        return [[(self.classes[i], float(v)) for v, i in zip(vs, ix, strict=True)]
                for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)]


def inference_autocast(device: torch.device) -> torch.dtype | None:
    """The 16-bit type predictions compute in on ``device``: on a CUDA GPU bf16 where it computes in
    bf16, else fp16; None (fp32, as the weights) on a CPU, where 16 bits pay only with bf16 units."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class Classifier:
    """A trained model with the preprocessing it was trained with; eval mode, no gradients.

    On a CUDA GPU it predicts in channels-last memory layout under autocast (``inference_autocast``):
    the fast path of GPU convolutions. On a CPU it computes in fp32, as ``eval.py`` does.
    """

    def __init__(self, model: nn.Module, info: dict[str, Any], device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.autocast = inference_autocast(self.device)
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.info = info
        self.classes: list[str] = list(info["classes"])
        self.in_channels: int = info["in_channels"]
        self.image_size: int = info["image_size"]
        # Checkpoints from before the evaluation resize existed resized to the input size itself.
        self.resize_size: int = info.get("resize_size") or self.image_size
        self._mean = torch.tensor(info["mean"], device=self.device)
        self._std = torch.tensor(info["std"], device=self.device)

    # --- input ---------------------------------------------------------------------------------
    def load(self, path: str | Path) -> torch.Tensor:
        """One image file as the uint8 (C, H, W) the model expects (converted and resized)."""
        return load_image(Path(path), self.image_size, self.in_channels, self.resize_size)

    def to_batch(self, images: ImageLike | Sequence[ImageLike]) -> torch.Tensor:
        """Paths or uint8 tensors ((C, H, W) or (N, C, H, W)) -> the normalised float batch."""
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            batch = images
        else:
            items = [images] if isinstance(images, str | Path | torch.Tensor) else list(images)
            batch = torch.stack([self.load(i) if isinstance(i, str | Path) else i for i in items])
        expected = (self.in_channels, self.image_size, self.image_size)
        if tuple(batch.shape[1:]) != expected or batch.dtype != torch.uint8:
            raise UserError(f"images must be uint8 of shape (N, {', '.join(map(str, expected))}), "
                            f"got {batch.dtype} {tuple(batch.shape)}")
        return normalise(batch.to(self.device), self._mean, self._std)

    # --- output --------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, images: ImageLike | Sequence[ImageLike], batch_size: int = 256) -> Predictions:
        """Class probabilities for ``images`` (file paths, or uint8 tensors as stored)."""
        batch = self.to_batch(images)
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            logits = torch.cat([self.model(batch[i : i + batch_size])
                                for i in range(0, len(batch), batch_size)])
        return Predictions(logits.float().softmax(dim=1).cpu(), self.classes)

    @torch.no_grad()
    def feature_maps(self, image: ImageLike) -> dict[str, torch.Tensor]:
        """Every named layer's output for one image, input side first: name -> (C, H, W) or (D,)."""
        layers = named_layers(self.model)
        outputs: dict[str, torch.Tensor] = {}

        def keep(index: int, output: torch.Tensor) -> None:
            outputs[layers[index][0]] = output[0].cpu()

        with layer_hooks(layers, keep):
            self.model(self.to_batch(image)[:1])
        return outputs


def choose_device(device: str | torch.device) -> str | torch.device:
    """``auto``: the first CUDA GPU where there is one, else the CPU; any other device as given."""
    if str(device) == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """The classifier stored in a layerscope checkpoint, ready to predict on ``device`` (``auto``:
    a CUDA GPU where there is one, else the CPU)."""
    device = choose_device(device)
    checkpoint = read_checkpoint(path)
    model = build_model(model_config(checkpoint, path))
    state = checkpoint["state_dict"]
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    load_weights(model, weights, path)
    return Classifier(model, checkpoint["hyper_parameters"]["data_info"], device)


def image_files(root: Path) -> list[Path]:
    """The files under ``root`` (a file, or a folder searched recursively), sorted; hidden ones skipped."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

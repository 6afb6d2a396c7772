"""Load a checkpoint for inference: ``load_classifier(path).predict(images)``.

A checkpoint alone rebuilds its model and preprocessing: model config, class names, input
channels and size, normalisation. It is read with ``torch.load(weights_only=True)``: tensors and
plain types only, so a file carrying a pickled payload is refused before any of it runs.
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
from layerscope.data.imagefolder import load_image
from layerscope.errors import UserError
from layerscope.models import build_model

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


class Classifier:
    """A trained model with the preprocessing it was trained with; eval mode, no gradients."""

    def __init__(self, model: nn.Module, info: dict[str, Any], device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.info = info
        self.classes: list[str] = list(info["classes"])
        self.in_channels: int = info["in_channels"]
        self.image_size: int = info["image_size"]
        self._mean = torch.tensor(info["mean"], device=self.device)
        self._std = torch.tensor(info["std"], device=self.device)

    # --- input ---------------------------------------------------------------------------------
    def load(self, path: str | Path) -> torch.Tensor:
        """One image file as the uint8 (C, H, W) the model expects (converted and resized)."""
        return load_image(Path(path), self.image_size, self.in_channels)

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
        logits = torch.cat([self.model(batch[i : i + batch_size]) for i in range(0, len(batch), batch_size)])
        return Predictions(logits.float().softmax(dim=1).cpu(), self.classes)

    @torch.no_grad()
    def feature_maps(self, image: ImageLike) -> dict[str, torch.Tensor]:
        """Every named layer's output for one image, input side first: name -> (C, H, W) or (D,)."""
        outputs: dict[str, torch.Tensor] = {}
        handles = [
            module.register_forward_hook(
                lambda _m, _i, out, name=name: outputs.__setitem__(name, out[0].detach().cpu())
            )
            for name, module in self.model.named_layers()
        ]
        try:
            self.model(self.to_batch(image)[:1])
        finally:
            for handle in handles:
                handle.remove()
        return outputs


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """The classifier stored in a layerscope checkpoint, ready to predict on ``device``."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    model = build_model(dict(hparams["model_config"]))
    state = checkpoint["state_dict"]
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise UserError(f"{path}: its weights do not fit its own model config: {err}") from err
    return Classifier(model, hparams["data_info"], device)


def image_files(root: Path) -> list[Path]:
    """The files under ``root`` (a file, or a folder searched recursively), sorted; hidden ones skipped."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

"""Load a checkpoint for inference: ``load_classifier(path).predict(images)``.

A checkpoint alone rebuilds its model and preprocessing (class names, input channels and size,
normalisation, evaluation resize); ``layerscope.checkpoint`` reads it and builds only the
project's own registered model builders.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerscope import ood
from layerscope.checkpoint import read_checkpoint, upgraded_data_info
from layerscope.data.augment import normalise
from layerscope.data.image_files import load_image
from layerscope.errors import UserError
from layerscope.models.layers import layer_hooks, named_layers

ImageLike = str | Path | torch.Tensor


class UncalibratedCheckpoint(UserWarning):
    """The checkpoint holds no out-of-distribution calibration for its weights: no in_distribution flag."""


@dataclass
class Predictions:
    """Class probabilities for a batch, with the names of the classes, and how unlike the training
    data each image is (``layerscope.ood``)."""

    probs: torch.Tensor  # (N, classes)
    classes: list[str]
    ood_scores: torch.Tensor  # (N,) the calibration's score per image: higher is less like the training data
    ood_threshold: float | None = None  # the calibrated threshold; None for an uncalibrated checkpoint

    @property
    def in_distribution(self) -> torch.Tensor | None:
        """bool (N,): the score is at most the threshold that kept ood.KEPT of validation images;
        None where the checkpoint carries no calibration."""
        if self.ood_threshold is None:
            return None
        return self.ood_scores <= self.ood_threshold

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

    def __init__(
        self, model: nn.Module, info: dict[str, Any], device: str | torch.device = "cpu",
        calibration: ood.Calibration | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.calibration = calibration
        self.model = model.to(self.device).eval()
        self.autocast = inference_autocast(self.device)
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.info = info = upgraded_data_info(info, "the classifier's data info")
        self.classes: list[str] = list(info["classes"])
        self.in_channels: int = info["in_channels"]
        self.image_size: int = info["image_size"]
        self.resize_size: int = info["resize_size"]
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
        """Class probabilities for ``images`` (file paths, or uint8 tensors as stored), with the
        out-of-distribution score the calibration flags by and its threshold."""
        logits, scores = self.logits_and_scores(images, batch_size)
        score = self.calibration.score if self.calibration else ood.FALLBACK_SCORE
        threshold = self.calibration.thresholds[score] if self.calibration else None
        return Predictions(logits.softmax(dim=1), self.classes, scores[score], threshold)

    @torch.no_grad()
    def logits_and_scores(
        self, images: ImageLike | Sequence[ImageLike], batch_size: int = 256
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """fp32 logits (N, classes) on the CPU, and every out-of-distribution score of each image
        (``layerscope.ood.scores``; ReAct's only with a calibration that holds its clip level)."""
        batch = self.to_batch(images)
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        head = ood.linear_head(self.model)
        clip = self.calibration.clip if self.calibration else None
        # The features are kept only where a clip level makes a ReAct score of them.
        with ood.head_inputs(head if clip is not None else None) as features, \
                torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            logits = torch.cat([self.model(batch[i : i + batch_size])
                                for i in range(0, len(batch), batch_size)])
        kept = torch.cat(features) if features else None
        scores = ood.scores(logits, kept, head, clip)
        return logits.float().cpu(), {name: values.cpu() for name, values in scores.items()}

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


def load_classifier(
    path: str | Path, device: str | torch.device = "cpu", say: Callable[[str], None] | None = None,
) -> Classifier:
    """The classifier stored in a layerscope checkpoint, ready to predict on ``device`` (``auto``:
    a CUDA GPU where there is one, else the CPU).

    A checkpoint without an out-of-distribution calibration for its weights still loads and
    predicts; an :class:`UncalibratedCheckpoint` warning says why it has none, or ``say`` is given
    that one line instead (the command-line apps print it).
    """
    checkpoint = read_checkpoint(path)
    model = checkpoint.model()  # first: a checkpoint refused for what it names gets no note besides
    calibration, why_not = checkpoint.ood_calibration()
    if why_not is not None and say is not None:
        say(why_not)
    elif why_not is not None:
        warnings.warn(why_not, UncalibratedCheckpoint, stacklevel=2)
    return Classifier(model, checkpoint.data_info, choose_device(device), calibration)


def image_files(root: Path) -> list[Path]:
    """The files under ``root`` (a file, or a folder searched recursively), sorted; hidden ones skipped."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

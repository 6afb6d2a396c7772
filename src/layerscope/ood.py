"""How unlike the training data an image is, and the threshold that calls it "not seen anything like this".

Published scores that need no extra training, each oriented so that higher means less like the
training data:

- ``energy``: the free energy ``-logsumexp(logits)`` (Liu, Wang, Owens, Li, "Energy-based
  Out-of-distribution Detection", NeurIPS 2020, at temperature 1);
- ``max_logit``: minus the largest logit (Hendrycks et al., "Scaling Out-of-Distribution Detection
  for Real-World Settings", ICML 2022);
- ``max_softmax``: minus the largest softmax probability (Hendrycks and Gimpel, "A Baseline for
  Detecting Misclassified and Out-of-Distribution Examples", ICLR 2017);
- ``react_energy``: the energy of the logits recomputed with the features entering the last
  (linear) layer clipped at ``CLIP_PERCENTILE`` of their validation values (Sun, Guo, Li, "ReAct:
  Out-of-distribution Detection With Rectified Activations", NeurIPS 2021). Unusual inputs (a
  plain colour, a photo) drive a few features far above anything training images give, and those
  make the plain logits more confident than on the training data itself; clipped, they cannot.

``SCORE`` is the one predictions report, chosen by ``benchmarks/ood.py`` (BENCHMARKS.md has the
comparison); a model whose last layer is not linear has no ReAct score and reports ``energy``.
Training calibrates at every validation pass, on the held-out validation images: the clip level,
and each score's threshold, the value ``KEPT`` of those images are at or below. Each checkpoint
stores the calibration of the weights it holds. ``in_distribution`` is "the score is at most the
threshold": by construction about 1 - ``KEPT`` of images like the validation set are flagged as
unlike it, and it promises nothing more: an unusual image the network answers as confidently as
its training images passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from layerscope.models.layers import module_hooks, named_layers

KEPT = 0.95  # the share of validation images the threshold calls in-distribution
CLIP_PERCENTILE = 0.90  # ReAct's clip level: this quantile of the validation features (the paper's 90 %)
REACT = "react_energy"
SCORE = REACT  # what predictions report and flag by (benchmarks/ood.py compares the scores)
FALLBACK_SCORE = "energy"  # SCORE for a model without a linear last layer to clip the input of
CHECKPOINT_KEY = "layerscope_ood"  # where a checkpoint keeps its Calibration, as a plain dict
MAX_QUANTILE_VALUES = 4_000_000  # torch.quantile's input size is capped: the clip reads a strided sample


def energy(logits: torch.Tensor) -> torch.Tensor:
    return -torch.logsumexp(logits, dim=1)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    return -logits.amax(dim=1)


def max_softmax(logits: torch.Tensor) -> torch.Tensor:
    return -logits.softmax(dim=1).amax(dim=1)


LOGIT_SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "energy": energy, "max_logit": max_logit, "max_softmax": max_softmax,
}


def linear_head(model: nn.Module) -> nn.Linear | None:
    """The last layer of the model's layer list where it is linear (ReAct clips its input), else None."""
    try:
        layers = named_layers(model)
    except TypeError:  # a model without a layer list has no head to clip
        return None
    last = layers[-1][1] if layers else None
    return last if isinstance(last, nn.Linear) else None


@contextmanager
def head_inputs(head: nn.Linear | None) -> Iterator[list[torch.Tensor]]:
    """The fp32 features entering ``head`` on each forward pass inside the block (none for None)."""
    features: list[torch.Tensor] = []
    points = {"head": (head, True)} if head is not None else {}
    with module_hooks(points, lambda _, tensor: features.append(tensor.float())):
        yield features


def clip_level(features: torch.Tensor) -> float:
    """ReAct's clip: ``CLIP_PERCENTILE`` of every value of the validation features (N, D)."""
    values = features.detach().float().flatten()
    stride = max(1, -(-len(values) // MAX_QUANTILE_VALUES))
    return float(torch.quantile(values[::stride], CLIP_PERCENTILE))


def scores(
    logits: torch.Tensor, features: torch.Tensor | None = None, head: nn.Linear | None = None,
    clip: float | None = None,
) -> dict[str, torch.Tensor]:
    """Every score of each image, fp32 (N,); ``react_energy`` too given the head's input features,
    the head and the clip level."""
    logits = logits.detach().float()
    table = {name: score(logits) for name, score in LOGIT_SCORES.items()}
    if features is not None and head is not None and clip is not None:
        with torch.no_grad():
            clipped = head(features.detach().to(head.weight.dtype).clamp(max=clip)).float()
        table[REACT] = energy(clipped)
    return table


@dataclass(frozen=True)
class Calibration:
    """Each score's threshold and ReAct's clip level, from ``images`` validation images at optimizer
    step ``step``."""

    thresholds: dict[str, float]  # score name -> the value ``kept`` of validation images are at or below
    clip: float | None  # ReAct's clip level; None for a model without a linear last layer
    kept: float
    images: int
    step: int

    @property
    def score(self) -> str:
        """The score predictions flag by: ``SCORE``, or ``FALLBACK_SCORE`` where it was not calibrated."""
        return SCORE if SCORE in self.thresholds else FALLBACK_SCORE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: Any) -> Calibration | None:
        """The calibration a checkpoint stored, or None where it is not a well-formed one."""
        if not isinstance(saved, Mapping):
            return None
        thresholds, clip = saved.get("thresholds"), saved.get("clip")
        if not isinstance(thresholds, Mapping) or not set(LOGIT_SCORES) <= set(thresholds) \
                or not all(isinstance(value, float) for value in thresholds.values()):
            return None
        if not (clip is None or isinstance(clip, float)) or (clip is not None) != (REACT in thresholds):
            return None
        kept, images, step = saved.get("kept"), saved.get("images"), saved.get("step")
        if not isinstance(kept, float) or not isinstance(images, int) or not isinstance(step, int):
            return None
        return cls(dict(thresholds), clip, kept, images, step)


def calibrate(
    logits: torch.Tensor, features: torch.Tensor | None, head: nn.Linear | None, step: int,
    kept: float = KEPT,
) -> Calibration:
    """The clip level and thresholds that keep ``kept`` of validation images (their ``logits`` and,
    for ReAct, the ``features`` entering ``head``)."""
    if logits.ndim != 2 or len(logits) == 0:
        raise ValueError(f"expected (N > 0, classes) logits, got {tuple(logits.shape)}")
    clip = clip_level(features) if features is not None and head is not None else None
    thresholds = {}
    for name, values in scores(logits, features, head, clip).items():
        # "higher": a value some validation image really had, so at least ``kept`` of them are at
        # or below it however few there are.
        thresholds[name] = float(torch.quantile(values.double(), kept, interpolation="higher"))
    return Calibration(thresholds, clip, kept, len(logits), step)

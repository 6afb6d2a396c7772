"""How unlike the training data an image is, from the logits alone, and the threshold that calls it
"not seen anything like this".

Three published scores that need no extra training, each computed from a network's logits and
oriented so that higher means less like the training data:

- ``energy``: the free energy ``-logsumexp(logits)`` (Liu, Wang, Owens, Li, "Energy-based
  Out-of-distribution Detection", NeurIPS 2020, at temperature 1);
- ``max_logit``: minus the largest logit (Hendrycks et al., "Scaling Out-of-Distribution Detection
  for Real-World Settings", ICML 2022);
- ``max_softmax``: minus the largest softmax probability (Hendrycks and Gimpel, "A Baseline for
  Detecting Misclassified and Out-of-Distribution Examples", ICLR 2017).

``SCORE`` is the one predictions report, chosen by ``benchmarks/ood.py`` (BENCHMARKS.md has the
comparison). Training calibrates every score's threshold at each validation pass, on the held-out
validation images: the score below which ``KEPT`` of them fall. Each checkpoint stores the
calibration of the weights it holds; ``in_distribution`` is then "the score is at most the
threshold", which by construction flags about 1 - ``KEPT`` of images like the validation set as
unlike it. What it promises is only that: a score far outside what validation images gave. An
image that the network maps to confident logits (an unusual image that happens to look like a
class to it) passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

KEPT = 0.95  # the share of validation images the threshold calls in-distribution
SCORE = "energy"  # the score predictions report and flag by (benchmarks/ood.py compares them)
CHECKPOINT_KEY = "layerscope_ood"  # where a checkpoint keeps its Calibration, as a plain dict


def energy(logits: torch.Tensor) -> torch.Tensor:
    return -torch.logsumexp(logits, dim=1)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    return -logits.amax(dim=1)


def max_softmax(logits: torch.Tensor) -> torch.Tensor:
    return -logits.softmax(dim=1).amax(dim=1)


SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "energy": energy, "max_logit": max_logit, "max_softmax": max_softmax,
}


def all_scores(logits: torch.Tensor) -> torch.Tensor:
    """(N, len(SCORES)) fp32: every score of each row of ``logits``, in ``SCORES``' order."""
    logits = logits.detach().float()
    return torch.stack([score(logits) for score in SCORES.values()], dim=1)


@dataclass(frozen=True)
class Calibration:
    """Each score's threshold, measured on ``images`` validation images at optimizer step ``step``."""

    thresholds: dict[str, float]  # score name -> the value ``kept`` of validation images are at or below
    kept: float
    images: int
    step: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: Any) -> Calibration | None:
        """The calibration a checkpoint stored, or None where it is not a well-formed one."""
        if not isinstance(saved, Mapping):
            return None
        thresholds = saved.get("thresholds")
        if not isinstance(thresholds, Mapping) or not all(
            isinstance(thresholds.get(name), float) for name in SCORES
        ):
            return None
        kept, images, step = saved.get("kept"), saved.get("images"), saved.get("step")
        if not isinstance(kept, float) or not isinstance(images, int) or not isinstance(step, int):
            return None
        return cls({name: thresholds[name] for name in SCORES}, kept, images, step)


def calibrate(scores: torch.Tensor, step: int, kept: float = KEPT) -> Calibration:
    """The thresholds that keep ``kept`` of ``scores`` (rows of ``all_scores`` on validation images)."""
    if scores.ndim != 2 or scores.shape[1] != len(SCORES) or len(scores) == 0:
        raise ValueError(f"expected (N > 0, {len(SCORES)}) scores, got {tuple(scores.shape)}")
    # "higher": the threshold is a value some validation image really had, so at least ``kept`` of
    # them are at or below it however few there are.
    thresholds = torch.quantile(scores.double(), kept, dim=0, interpolation="higher")
    return Calibration(
        {name: float(value) for name, value in zip(SCORES, thresholds.tolist(), strict=True)},
        kept, len(scores), step,
    )

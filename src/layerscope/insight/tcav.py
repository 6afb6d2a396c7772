"""How much each discovered concept matters to each class: TCAV through Captum, with its significance test.

Kim et al. ("Interpretability Beyond Feature Attribution: Testing with Concept Activation Vectors",
ICML 2018) train a linear classifier that separates a concept's activations at a layer from a random
set's; its normal is the concept activation vector (CAV). A class's TCAV score is the share of the
class's images whose logit rises when the layer's activation moves along the CAV. A concept matters
only if its scores against several random sets differ from those of random sets against each other
(a two-sided t-test; Bonferroni-corrected over every concept and class of the layer).

Computed by ``captum.concept.TCAV`` (its default classifier and its gradient attribution), in the
space the concepts were discovered in (``ace.pooled``): the layer's map averaged over the segment's
pixels. Captum reads activations from modules, so each layer gets a module whose output is that
average, added to the layer's map as ``map + (avg - avg.detach())``: the network computes exactly
what it did, and the gradient Captum takes at the module is the class logit's derivative for a move
of every position of the map along one direction of the channels. The random sets are random
segments of the same images, as ACE's random concepts are random images' segments.
"""

from __future__ import annotations

import random
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captum.concept import TCAV, Concept
from scipy.stats import ttest_ind
from torch import nn

from layerscope.insight.ace import mean_weights


class _SegmentMean(nn.Module):
    """A layer's map averaged over each image's segment (the pooled embedding of ``ace.pooled``)."""

    def forward(self, maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        weights = mean_weights(masks, tuple(maps.shape[-2:])).to(maps.dtype)
        return torch.einsum("bchw,bhw->bc", maps, weights)


class SegmentProbe(nn.Module):
    """``model`` taking (images, segment masks), with a ``means.<key>`` module per probed layer."""

    def __init__(self, model: nn.Module, layers: dict[str, nn.Module]) -> None:
        super().__init__()
        self.model = model
        self.means = nn.ModuleDict({key: _SegmentMean() for key in layers})
        self._layers = layers

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        def hook(key: str):
            def add_mean(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
                mean = self.means[key](output, masks)
                return output + (mean - mean.detach())[:, :, None, None]
            return add_mean

        handles = [module.register_forward_hook(hook(key)) for key, module in self._layers.items()]
        try:
            return self.model(images)
        finally:
            for handle in handles:
                handle.remove()


@contextmanager
def own_generators(seed: int) -> Iterator[None]:
    """Python's, NumPy's and torch's generators seeded for the duration and restored after, so that
    Captum's shuffles and scikit-learn's SGD neither change training's draws nor vary between runs."""
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


@dataclass
class ConceptScores:
    """TCAV scores of a layer's concepts for every class, and whether each differs from random."""

    scores: np.ndarray  # (K, classes): the mean TCAV score (share of class images) over the random sets
    p_values: np.ndarray  # (K, classes): the t-test's p against random-against-random scores
    random_scores: np.ndarray  # (classes,): the mean TCAV score of random sets against each other
    alpha: float  # the corrected level each p is compared with

    @property
    def significant(self) -> np.ndarray:
        """bool (K, classes): the concept matters to the class, raising or lowering its logit."""
        return self.p_values < self.alpha

    @property
    def raises(self) -> np.ndarray:
        """bool (K, classes): significant, with a score above random sets': it speaks for the class."""
        return self.significant & (self.scores > self.random_scores[None, :])


def _batches(images: torch.Tensor, masks: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images[i:i + size], masks[i:i + size]) for i in range(0, len(images), size)]


def tcav_scores(
    probe: SegmentProbe, key: str, concepts: list[tuple[torch.Tensor, torch.Tensor]],
    randoms: list[tuple[torch.Tensor, torch.Tensor]], class_inputs: dict[int, torch.Tensor],
    classes: int, alpha: float = 0.05, workdir: Path | None = None, batch_size: int = 256,
) -> ConceptScores:
    """TCAV scores at the probe's layer ``key`` of each concept (model-ready images, float masks).

    ``randoms`` holds at least three random sets: the first is scored against the others as the null,
    each concept against all but the first. ``class_inputs`` maps a class to its model-ready images.
    Captum writes its activations and CAVs to a temporary folder inside ``workdir``.
    """
    if len(randoms) < 3:
        raise ValueError("the significance test needs at least three random sets")
    layer = f"means.{key}"
    made = [Concept(k, f"concept{k}", _batches(*data, batch_size)) for k, data in enumerate(concepts)]
    base = len(made)
    nulls = [Concept(base + r, f"random{r}", _batches(*data, batch_size)) for r, data in enumerate(randoms)]
    sets = [[c, r] for c in made for r in nulls[1:]] + [[nulls[0], r] for r in nulls[1:]]
    shown = np.zeros((len(made), classes))
    p_values = np.ones((len(made), classes))
    random_scores = np.zeros(classes)
    tests = max(1, len(made) * len(class_inputs))
    with tempfile.TemporaryDirectory(dir=workdir) as folder, warnings.catch_warnings():
        # Captum's notes to its developers (its default classifier's memory, NumPy's renamed core):
        # nothing a user of this view can act on.
        warnings.filterwarnings("ignore", module=r"captum\.")
        tcav = TCAV(probe, [layer], model_id="layerscope", save_path=folder)
        # Trained once, up front: each concept's activations computed once (interpret alone computes
        # them again for every set the concept is in), the CAVs then read back by each class's call.
        tcav.compute_cavs(sets, force_train=True)
        for target, images in sorted(class_inputs.items()):
            masks = torch.ones(len(images), *images.shape[-2:], device=images.device)
            found = tcav.interpret((images, masks), sets, target=target)

            def score(pair: list[Concept], found: dict = found) -> float:
                key_of = "-".join(str(c.id) for c in pair)
                return float(found[key_of][layer]["sign_count"][0])

            null = [score([nulls[0], r]) for r in nulls[1:]]
            random_scores[target] = float(np.mean(null))
            for k, concept in enumerate(made):
                mine = [score([concept, r]) for r in nulls[1:]]
                shown[k, target] = float(np.mean(mine))
                p_values[k, target] = _p_value(mine, null)
    return ConceptScores(shown, p_values, random_scores, alpha / tests)


def _p_value(scores: list[float], null: list[float]) -> float:
    """Two-sided Welch t-test; 1 where both sides are constant and equal (nothing to tell apart)."""
    if np.ptp(scores) == 0 and np.ptp(null) == 0:
        return 1.0 if scores[0] == null[0] else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nearly constant sides: the p is still right
        return float(ttest_ind(scores, null, equal_var=False).pvalue)

"""How abstract is each layer? Linear probes on every layer's pooled activations.

A linear probe (Alain & Bengio, "Understanding intermediate layers using linear classifier
probes", 2016) is a linear classifier trained on a frozen layer's output (here ridge regression):
if it can read the object class (or, on ``shapes``, which parts an image contains) off a layer,
the layer has made that information explicit. Plotted against depth, this measures "edges -> parts -> objects"
instead of asserting it.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from layerscope.insight import render
from layerscope.insight.capture import LayerStats, layer_tag
from layerscope.insight.inputs import insight_data
from layerscope.insight.sample import SampleView

FIT_SHARE = 2 / 3  # probes train on this share of the sample and are scored on the rest


def pooled_features(stats: LayerStats) -> torch.Tensor:
    """Each channel's mean and peak over positions: how much of a pattern, and whether it is anywhere."""
    if stats.width == 1 and torch.equal(stats.mean, stats.peak):
        return stats.mean
    return torch.cat([stats.mean, stats.peak], dim=1)


def fit_probe(features: torch.Tensor, targets: torch.Tensor, ridge: float = 1.0) -> torch.Tensor:
    """A least-squares linear probe: weights (with a bias row) mapping features to ``targets``.

    Ridge regression onto +-1 targets, solved in closed form: deterministic, no random draws,
    and a few microseconds per layer, so probing every layer every epoch costs next to nothing.
    """
    x = torch.cat([features, torch.ones(len(features), 1)], dim=1).double()
    penalty = ridge * torch.eye(x.shape[1], dtype=x.dtype)
    penalty[-1, -1] = 0  # the bias is not shrunk
    return torch.linalg.solve(x.T @ x + penalty, x.T @ (2 * targets.double() - 1)).float()


def apply_probe(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return features @ weight[:-1] + weight[-1]


def probe_scores(
    features: torch.Tensor, labels: torch.Tensor, parts: torch.Tensor | None
) -> dict[str, float]:
    """Held-out accuracy of a class probe and, given part labels, balanced accuracy of a parts probe."""
    cut = int(len(features) * FIT_SHARE)
    mean, std = features[:cut].mean(0), features[:cut].std(0).clamp_min(1e-6)
    x = (features - mean) / std
    scores = {}
    one_hot = F.one_hot(labels, int(labels.max()) + 1)
    weight = fit_probe(x[:cut], one_hot[:cut])
    scores["class"] = (apply_probe(x[cut:], weight).argmax(1) == labels[cut:]).float().mean().item()
    if parts is not None:
        predicted = apply_probe(x[cut:], fit_probe(x[:cut], parts[:cut])) > 0
        scores["parts"] = balanced_accuracy(predicted, parts[cut:].bool())
    return scores


def balanced_accuracy(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean over parts of (hit rate + correct-rejection rate) / 2: 0.5 is chance for every part."""
    hits = (predicted & truth).sum(0) / truth.sum(0).clamp_min(1)
    rejections = (~predicted & ~truth).sum(0) / (~truth).sum(0).clamp_min(1)
    return ((hits + rejections) / 2).mean().item()


class LayerProbes(SampleView):
    """``probe/class/NN_<layer>`` (and ``probe/parts/...`` on data with part labels) per layer,
    the chart ``probe/accuracy_vs_depth``, and each layer's receptive field in pixels."""

    def __init__(self, every_n_epochs: int = 1, sample_size: int = 2000) -> None:
        super().__init__(every_n_epochs, sample_size)
        self._fields_logged = False

    def draw(
        self, writer: SummaryWriter, trainer: L.Trainer, pl_module: L.LightningModule, step: int
    ) -> None:
        sample, layers = self.sample(trainer, pl_module), self.anatomy(trainer, pl_module)
        if not self._fields_logged:
            for index, anatomy in enumerate(layers):
                tag = layer_tag(index, anatomy.name)
                writer.add_scalar(f"receptive_field/{tag}", anatomy.receptive_field, 0)
            self._fields_logged = True
        curves: dict[str, list[float]] = {}
        for index, (anatomy, stats) in enumerate(zip(layers, sample.stats, strict=True)):
            scores = probe_scores(pooled_features(stats), sample.labels, sample.parts)
            for kind, value in scores.items():
                writer.add_scalar(f"probe/{kind}/{layer_tag(index, anatomy.name)}", value, step)
                curves.setdefault(kind, []).append(value)
        writer.add_figure("probe/accuracy_vs_depth", self._chart(curves, trainer, step), step)

    def _chart(self, curves: dict[str, list[float]], trainer: L.Trainer, step: int) -> Figure:
        names = [a.name for a in self._anatomy or []]
        depth = range(1, len(names) + 1)
        figure, axes = render.new_figure(max(6.0, 0.35 * len(names)), 4.2)
        classes = len(insight_data(trainer).classes)
        axes.plot(depth, curves["class"], "o-", label="object class (accuracy)")
        axes.axhline(1 / classes, color="C0", linestyle=":", label="class: chance")
        if "parts" in curves:
            axes.plot(depth, curves["parts"], "s-", label="parts present (balanced accuracy)")
            axes.axhline(0.5, color="C1", linestyle=":", label="parts: chance")
        axes.set_xticks(list(depth), names, rotation=70, fontsize=7)
        axes.set_xlabel("layer (input side -> output side)")
        axes.set_ylabel("held-out probe accuracy")
        axes.set_ylim(0, 1.02)
        axes.set_title(f"What a linear probe can read off each layer (epoch {step})")
        secondary = axes.twinx()
        secondary.plot(depth, [a.receptive_field for a in self._anatomy], color="grey", alpha=0.4)
        secondary.set_ylabel("receptive field (pixels, grey line)")
        axes.legend(loc="lower right", fontsize=7)
        figure.tight_layout()
        return figure

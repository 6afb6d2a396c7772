"""How abstract is each layer? Linear probes on every layer's pooled activations.

A linear probe (Alain & Bengio, "Understanding intermediate layers using linear classifier
probes", 2016) is a linear classifier trained on a frozen layer's output: if it can read the
object class (or, on ``shapes``, which parts an image contains) off a layer, the layer has made
that information explicit. Plotted against depth, this measures "edges -> parts -> objects"
instead of asserting it.

What is measured, per layer and logged epoch, on the validation sample:

- features: the layer's output pooled per channel, its mean and its max over positions (a 1-D
  output as it is), standardised with the statistics of the fit share;
- probes: ridge regression onto +-1 targets (one output per class, one per part), fit in closed
  form on the first 2/3 of the sample and scored on the other 1/3, which it never saw;
- ``probe/class/NN_layer``: held-out accuracy of the class probe (its largest output);
- ``probe/parts/<part>/NN_layer``: held-out balanced accuracy of the probe for one part, the mean
  of its hit rate (images with the part) and correct-rejection rate (images without): 0.5 is
  chance, whatever the part's frequency; ``probe/parts/NN_layer`` is the mean over parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from layerscope.insight import render
from layerscope.insight.base import Context, EpochView
from layerscope.insight.capture import LayerStats
from layerscope.insight.findings import first_reaching, peak
from layerscope.insight.inputs import InsightData
from layerscope.models.layers import layer_tag

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
    features: torch.Tensor, labels: torch.Tensor, parts: torch.Tensor | None, part_names: Sequence[str] = ()
) -> dict[str, float]:
    """Held-out probe scores: ``class`` accuracy and, given part labels, ``parts`` balanced accuracy
    (the mean over parts) and, given their names, ``parts/<name>`` for each part."""
    cut = int(len(features) * FIT_SHARE)
    mean, std = features[:cut].mean(0), features[:cut].std(0).clamp_min(1e-6)
    x = (features - mean) / std
    scores = {}
    one_hot = F.one_hot(labels, int(labels.max()) + 1)
    weight = fit_probe(x[:cut], one_hot[:cut])
    scores["class"] = (apply_probe(x[cut:], weight).argmax(1) == labels[cut:]).float().mean().item()
    if parts is not None:
        # One ridge fit with a column per part: each column's solution is that part's own probe.
        predicted = apply_probe(x[cut:], fit_probe(x[:cut], parts[:cut])) > 0
        per_part = balanced_accuracy_per_part(predicted, parts[cut:].bool())
        scores["parts"] = per_part.mean().item()
        if part_names:
            for name, value in zip(part_names, per_part.tolist(), strict=True):
                scores[f"parts/{name}"] = value
    return scores


def balanced_accuracy_per_part(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """For each part (column): (hit rate + correct-rejection rate) / 2; 0.5 is chance."""
    hits = (predicted & truth).sum(0) / truth.sum(0).clamp_min(1)
    rejections = (~predicted & ~truth).sum(0) / (~truth).sum(0).clamp_min(1)
    return (hits + rejections) / 2


def balanced_accuracy(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean over parts of (hit rate + correct-rejection rate) / 2: 0.5 is chance for every part."""
    return balanced_accuracy_per_part(predicted, truth).mean().item()


def part_names(data: InsightData, count: int) -> list[str]:
    """The data set's names for its ``count`` part labels (numbered where it names none)."""
    names = list(data.info.get("part_names") or [])
    return names if len(names) == count else [f"part{k + 1}" for k in range(count)]


@dataclass
class ProbeResult:
    """One probing of every layer: when, the layers, and each probe's held-out score per layer."""

    step: int
    tags: list[str]  # NN_layer, input side first
    receptive_fields: list[int]  # pixels, per layer
    curves: dict[str, list[float]]  # "class", and with part labels "parts" and "parts/<part>"
    classes: int  # how many classes (chance for the class probe is 1 / classes)

    def findings(self, first: ProbeResult) -> list[str]:
        """Where the class and part probes reached their best at this probing (the latest)."""
        step, names, curves = self.step, self.tags, self.curves
        layer, value = first_reaching(curves["class"], names, 0.95)
        best_layer, best = peak(curves["class"], names)
        lines = [f"Linear probes on each layer's pooled output (step {step}): the class probe first "
                 f"reached 95 % of its best at `{layer}` ({value:.1%}); its best was {best:.1%} "
                 f"at `{best_layer}`."]
        parts = {kind.removeprefix("parts/"): values for kind, values in curves.items()
                 if kind.startswith("parts/")}
        if parts:
            layer, value = peak(curves["parts"], names)
            peaks = {part: peak(values, names) for part, values in parts.items()}
            where = ", ".join(f"{part} at `{at}` ({score:.0%})" for part, (at, score) in peaks.items())
            lines.append(f"The part probes (balanced accuracy, 50 % is chance) peaked on average at "
                         f"`{layer}` ({value:.1%}); each part: {where}.")
        return lines


class LayerProbes(EpochView):
    """``probe/class/NN_<layer>`` per layer (on data with part labels also ``probe/parts/NN_<layer>``
    and ``probe/parts/<part>/NN_<layer>``), the charts ``probe/accuracy_vs_depth`` and (with part
    labels) ``probe/parts_vs_depth``, and each layer's receptive field in pixels. Each probing is a
    ``ProbeResult`` in the run's results (for the layer story and the guide's findings)."""

    def __init__(self, every_n_epochs: int = 1, sample_size: int = 2000) -> None:
        super().__init__(every_n_epochs)
        self.sample_size = sample_size
        self._fields_logged = False

    def draw(self, context: Context) -> None:
        sample, layers = context.sample(self.sample_size), context.anatomy()
        writer, step = context.writer, context.step
        if not self._fields_logged:
            for index, anatomy in enumerate(layers):
                tag = layer_tag(index, anatomy.name)
                writer.add_scalar(f"receptive_field/{tag}", anatomy.receptive_field, 0)
            self._fields_logged = True
        parts = [] if sample.parts is None else part_names(context.data, sample.parts.shape[1])
        curves: dict[str, list[float]] = {}
        for index, (anatomy, stats) in enumerate(zip(layers, sample.stats, strict=True)):
            scores = probe_scores(pooled_features(stats), sample.labels, sample.parts, parts)
            for kind, value in scores.items():
                writer.add_scalar(f"probe/{kind}/{layer_tag(index, anatomy.name)}", value, step)
                curves.setdefault(kind, []).append(value)
        result = ProbeResult(
            step, [layer_tag(i, a.name) for i, a in enumerate(layers)], [a.receptive_field for a in layers],
            curves, len(context.data.classes),
        )
        context.results.add(result)
        figure, axes = render.new_figure(max(6.0, 0.35 * len(layers)), 4.2)
        self.chart(axes, result)
        context.log_figure("probe/accuracy_vs_depth", figure)
        if parts:
            per_part = {name: curves[f"parts/{name}"] for name in parts}
            names = [a.name for a in layers]
            context.log_figure("probe/parts_vs_depth", self._parts_chart(per_part, names, step))

    @staticmethod
    def chart(axes: Axes, result: ProbeResult, fontsize: float = 7, title: str | None = None) -> None:
        """The class probe (and the average part probe) per layer, with chance and the receptive field."""
        names = [tag.split("_", 1)[1] for tag in result.tags]
        depth = range(1, len(names) + 1)
        axes.plot(depth, result.curves["class"], "o-", label="object class (accuracy)")
        axes.axhline(1 / result.classes, color="C0", linestyle=":", label="class: chance")
        if "parts" in result.curves:
            axes.plot(depth, result.curves["parts"], "s-", label="parts present (balanced accuracy)")
            axes.axhline(0.5, color="C1", linestyle=":", label="parts: chance")
        LayerProbes._depth_axis(axes, names, fontsize)
        axes.set_ylabel("held-out probe accuracy", fontsize=fontsize + 1)
        title = title or f"What a linear probe can read off each layer (epoch {result.step})"
        axes.set_title(title, fontsize=fontsize + 3)
        secondary = axes.twinx()
        secondary.plot(depth, result.receptive_fields, color="grey", alpha=0.4)
        secondary.set_ylabel("receptive field (pixels, grey line)", fontsize=fontsize + 1)
        secondary.tick_params(labelsize=fontsize)
        axes.legend(loc="lower right", fontsize=fontsize)

    def _parts_chart(self, curves: dict[str, list[float]], names: list[str], step: int) -> Figure:
        """One line per part: at which depth a probe can tell whether the image holds that part."""
        depth = range(1, len(names) + 1)
        figure, axes = render.new_figure(max(6.0, 0.35 * len(names)), 4.2)
        markers = "osv^D<>ph*"
        for index, (part, values) in enumerate(curves.items()):
            axes.plot(depth, values, f"{markers[index % len(markers)]}-", label=part, alpha=0.85)
        axes.axhline(0.5, color="grey", linestyle=":", label="chance")
        self._depth_axis(axes, names)
        axes.set_ylabel("held-out balanced accuracy")
        axes.set_title(f"Which parts a linear probe can tell are present, per layer (epoch {step})")
        axes.legend(loc="lower right", fontsize=7, ncol=2)
        return figure

    @staticmethod
    def _depth_axis(axes: Axes, names: list[str], fontsize: float = 7) -> None:
        axes.set_xticks(list(range(1, len(names) + 1)), names, rotation=70, fontsize=fontsize)
        axes.set_xlabel("layer (input side -> output side)", fontsize=fontsize + 1)
        axes.set_ylim(0, 1.02)

"""Concepts the network found for itself, without labels: ACE's discovery, scored by TCAV, layer by layer.

For each inspected layer, :func:`discover_concepts` segments validation images into superpixels,
clusters the segments by the layer's activation (``ace``), and scores each concept's importance for
each class with TCAV through Captum (``tcav``). What it measures, on any data: how many concepts a
layer holds that matter to a class more than random sets of segments do, and how often a concept's
segments come from one class. Where the data set has part masks (``shapes``) also how often they
lie on one part kind. What it cannot say: what a concept *is*. The grid of its segments shows it;
naming it is for the reader.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from layerscope.errors import UserError
from layerscope.insight import ace, render
from layerscope.insight.base import Context, View
from layerscope.insight.feature_vis import readable_layers
from layerscope.insight.tcav import ConceptScores, SegmentProbe, own_generators, tcav_scores
from layerscope.models.layers import inspection_mode, layer_hooks, layer_tag, named_layers

log = logging.getLogger(__name__)


@dataclass
class LayerConcepts:
    """The concepts discovered at one layer, with what was measured of each."""

    index: int
    name: str
    concepts: list[ace.Discovered]
    scores: ConceptScores | None  # None where the layer has no concept
    classes: list[tuple[int, float]]  # per concept: its most common class and the share it holds
    parts: list[tuple[int, float]] | None  # per concept: its most common part kind (0: none), share

    @property
    def tag(self) -> str:
        return layer_tag(self.index, self.name)

    @property
    def significant(self) -> int:
        """Concepts that matter to at least one class."""
        return 0 if self.scores is None else int(self.scores.significant.any(axis=1).sum())


@dataclass
class Discovery:
    """What :func:`discover_concepts` measured on a set of images."""

    segments: ace.Segments
    layers: list[LayerConcepts]


def discover_concepts(
    model: nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
    labels: torch.Tensor, layers: list[int], part_masks: torch.Tensor | None = None,
    scales: tuple[int, ...] = ace.SCALES, clusters: int = 25, examples: int = 40, min_images: int = 10,
    random_sets: int = 50, alpha: float = 0.05, seed: int = 0, workdir: Path | None = None,
    class_count: int | None = None,
) -> Discovery:
    """ACE and TCAV at each of ``layers`` (indices of the layer list) on uint8 ``images``.

    ``prepare`` turns uint8 images into the model's input; ``part_masks`` (bool (N, P, H, W)), where
    given, lets each concept's part purity be measured; ``class_count`` is the model's number of
    classes (default: the highest label + 1). Runs with its own generators (``seed``), in
    eval mode, and leaves the model's parameters and gradients as they were.
    """
    segments = ace.superpixels(images, scales)
    named = named_layers(model)
    maps: dict[int, torch.Tensor] = {}

    def keep(index: int, output: torch.Tensor) -> None:
        if index in layers and output.dim() == 4:
            maps[index] = output.float().cpu()

    with inspection_mode(model), layer_hooks(named, keep):
        inputs = prepare(images)
        model(inputs)
    class_of = labels.numpy()[segments.image.numpy()]
    part_of = None if part_masks is None else ace.part_labels(segments, part_masks)
    probe = SegmentProbe(model, {f"layer{i}": named[i][1] for i in maps})
    generator = np.random.default_rng(seed)
    device = inputs.device
    targets = {int(c): inputs[labels.to(device) == c] for c in labels.unique()}
    found = []

    def examples_of(members: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's inputs and float masks of these segments: what TCAV reads a concept from."""
        rows = torch.from_numpy(members)
        return inputs[segments.image[rows].to(device)], segments.masks[rows].float().to(device)

    with inspection_mode(model), torch.enable_grad(), own_generators(seed):
        for index in sorted(maps):
            embedded = ace.pooled(maps[index], segments)
            concepts = ace.discover(embedded, segments, clusters, examples, min_images, seed)
            scores = None
            if concepts:
                size = min(examples, len(segments))
                randoms = [examples_of(generator.choice(len(segments), size, replace=False))
                           for _ in range(random_sets + 1)]
                scores = tcav_scores(probe, f"layer{index}", [examples_of(c.members) for c in concepts],
                                     randoms, targets, class_count or int(labels.max()) + 1, alpha, workdir)
            found.append(LayerConcepts(
                index, named[index][0], concepts, scores,
                [ace.purity(class_of, c.members) for c in concepts],
                None if part_of is None else [ace.purity(part_of, c.members) for c in concepts],
            ))
    return Discovery(segments, found)


def mean_purity(purities: list[tuple[int, float]] | None) -> float | None:
    """The mean share of the concepts' most common label, None without concepts."""
    return None if not purities else float(np.mean([share for _, share in purities]))


def part_concepts(parts: list[tuple[int, float]] | None) -> tuple[int, float | None]:
    """How many concepts lie mostly on parts (label 0 is the background), and their mean part purity."""
    on_parts = [(label, share) for label, share in parts or [] if label != 0]
    return len(on_parts), mean_purity(on_parts)


class ConceptDiscovery(View):
    """``concepts/NN_<layer>``: each layer's discovered concepts, a row of their segments each;
    ``concepts/tcav`` (TEXT): every concept's TCAV score per class and its significance;
    ``concepts/significant_by_depth``: the number of concepts per layer, and how many matter to a
    class; scalars ``concepts/significant/``, ``concepts/class_purity/`` and (on data with part
    masks) ``concepts/part_purity/`` per layer. Drawn once, at the end of training: on the default
    run's ResNet-20 it takes about 75 s, 1.7 times an fp32 epoch of that run (BENCHMARKS.md), far
    over the default views' 5 % budget, so it is in ``insight=full`` only.
    """

    once_per_run = True

    def __init__(
        self, layers: list[int] | None = None, images: int = 200, scales: tuple[int, ...] = ace.SCALES,
        clusters: int = 25, examples: int = 40, min_images: int = 10, random_sets: int = 50,
        alpha: float = 0.05, shown: int = 10, segments_per_row: int = 8, seed: int = 0,
    ) -> None:
        numbers = {"images": images, "clusters": clusters, "examples": examples, "shown": shown,
                   "segments_per_row": segments_per_row}
        for key, value in numbers.items():
            if value < 1:
                raise UserError(f"insight.concept_discovery.{key}={value} must be 1 or more")
        if min_images < 1 or random_sets < 2 or not 0 < alpha < 1 or not scales or min(scales) < 1:
            raise UserError("insight.concept_discovery needs min_images >= 1, random_sets >= 2, "
                            f"0 < alpha < 1 and scales of 1 or more (has {min_images}, {random_sets}, "
                            f"{alpha}, {list(scales)})")
        self.layers = None if layers is None else list(layers)
        self.images, self.scales, self.clusters, self.examples = images, tuple(scales), clusters, examples
        self.min_images, self.random_sets, self.alpha, self.seed = min_images, random_sets, alpha, seed
        self.shown, self.segments_per_row = shown, segments_per_row

    def _layers(self, context: Context) -> list[int]:
        anatomy = context.anatomy()
        if self.layers is None:
            return readable_layers(anatomy)
        wrong = [n for n in self.layers if not 1 <= n <= len(anatomy)]
        if wrong:
            raise UserError(f"insight.concept_discovery.layers has {wrong}: this model has layers 1 to "
                            f"{len(anatomy)} (set layers=null for layer 1, each stage's middle and the last)")
        return sorted({n - 1 for n in self.layers})

    def end(self, context: Context) -> None:
        data = context.data
        count = min(self.images, len(data.val))
        images, labels = data.val.images[:count], data.val.labels[:count]
        masks = data.concept_masks(torch.arange(count))
        parts = None
        if masks is not None and "part" in masks.kinds:
            chosen = [k for k, kind in enumerate(masks.kinds) if kind == "part"]
            parts, part_names = masks.masks[:, chosen], [masks.names[k] for k in chosen]
        folder = Path(context.writer.log_dir)
        with tempfile.TemporaryDirectory(dir=folder, prefix="tcav-") as workdir:
            found = discover_concepts(
                context.model, context.prepare, images, labels, self._layers(context), parts, self.scales,
                self.clusters, self.examples, self.min_images, self.random_sets, self.alpha, self.seed,
                Path(workdir), len(data.classes),
            )
        if not found.layers:
            log.info("concept discovery: the model has no layer with a spatial map, so it logs nothing")
            return
        names = {"class": data.classes, "part": ["none", *part_names] if parts is not None else []}
        self._log(context, images, found, names)

    def _log(
        self, context: Context, images: torch.Tensor, found: Discovery, names: dict[str, list[str]]
    ) -> None:
        writer, step = context.writer, context.step
        for layer in found.layers:
            writer.add_scalar(f"concepts/significant/{layer.tag}", layer.significant, step)
            purity = mean_purity(layer.classes)
            if purity is not None:
                writer.add_scalar(f"concepts/class_purity/{layer.tag}", purity, step)
            _, part = part_concepts(layer.parts)
            if part is not None:
                writer.add_scalar(f"concepts/part_purity/{layer.tag}", part, step)
            if layer.concepts:
                picture = self._picture(images, found, layer, names)
                render.log_image(writer, f"concepts/{layer.tag}", picture, step)
        figure, axes = render.new_figure(max(6.0, 0.5 * len(found.layers)), 4.0)
        positions = np.arange(len(found.layers))
        axes.bar(positions, [len(layer.concepts) for layer in found.layers], color="0.8",
                 label="discovered (coherent clusters)")
        axes.bar(positions, [layer.significant for layer in found.layers], color="C1",
                 label="matter to a class (TCAV, significant)")
        axes.set_xticks(positions, [layer.tag for layer in found.layers], rotation=45, ha="right", fontsize=8)
        axes.set_ylabel("concepts")
        axes.set_title(f"Epoch {step}: concepts discovered at each depth")
        axes.legend(fontsize=8)
        context.log_figure("concepts/significant_by_depth", figure)
        writer.add_text("concepts/tcav", self._table(found, names), step)

    def _order(self, layer: LayerConcepts) -> list[int]:
        """The concepts shown: those that matter to most classes first, then the most widespread."""
        scores = layer.scores
        matter = np.zeros(len(layer.concepts)) if scores is None else scores.significant.sum(axis=1)
        order = sorted(range(len(layer.concepts)), key=lambda k: (-matter[k], -layer.concepts[k].images))
        return order[: self.shown]

    def _caption(self, layer: LayerConcepts, k: int, names: dict[str, list[str]]) -> str:
        label, share = layer.classes[k]
        text = f"{k}: {share:.0%} {names['class'][label]}"
        if layer.parts is not None:
            part, part_share = layer.parts[k]
            text += f", {part_share:.0%} " + (f"on {names['part'][part]}" if part else "on no part")
        if layer.scores is not None:
            raised = [names["class"][c] for c in np.flatnonzero(layer.scores.raises[k])]
            text += "; speaks for " + (", ".join(raised[:2]) + (" ..." if len(raised) > 2 else "")
                                       if raised else "no class")
        return text

    def _picture(self, images: torch.Tensor, found: Discovery, layer: LayerConcepts,
                 names: dict[str, list[str]]) -> np.ndarray:
        """A row per concept: its segments nearest the cluster centre, bright where the segment is."""
        segments, size = found.segments, images.shape[-1]
        rows, captions = [], []
        tile = 2 * size + 2
        for row, k in enumerate(self._order(layer)):
            members = torch.from_numpy(layer.concepts[k].members[: self.segments_per_row])
            pictures = render.display_images(images[segments.image[members]])
            lit = segments.masks[members].float()[:, None]
            rows.append(render.resize(pictures * (0.25 + 0.75 * lit), 2 * size))
            captions.append((2 + tile * row + size, self._caption(layer, k, names)))
        title = f"{layer.tag}: concepts found without labels (ACE), bright where each segment lies"
        return render.captioned(render.grid(rows), captions, title, margin=420)

    def _table(self, found: Discovery, names: dict[str, list[str]]) -> str:
        classes = names["class"]
        images = int(found.segments.image.max()) + 1 if len(found.segments) else 0
        lines = [
            f"Concepts discovered without labels (Ghorbani et al. 2019) in {images} validation images"
            f" ({len(found.segments)} SLIC segments at {', '.join(map(str, self.scales))} per image), "
            f"k-means into {self.clusters} clusters per layer, each kept with its {self.examples} segments "
            f"nearest its centre if they come from {self.min_images} images or more. TCAV scores "
            "(Kim et al. 2018, Captum): the share of a class's images whose logit rises along the "
            f"concept's direction, averaged over {self.random_sets} random sets; **bold** where it "
            f"differs from random sets' own scores (t-test, p below {self.alpha:g} Bonferroni-corrected "
            "over the layer's concepts and classes): above the random row, the concept speaks for the "
            "class; below it, against. A view of what the network groups together, not a name for it.",
            "",
            "| layer | concept | images | most common class | " + " | ".join(classes) + " |",
            "|---|---|---|---|" + "---|" * len(classes),
        ]
        for layer in found.layers:
            if layer.scores is None:
                lines.append(f"| {layer.tag} | none | | |" + " |" * len(classes))
                continue
            for k, concept in enumerate(layer.concepts):
                label, share = layer.classes[k]
                cells = [f"**{s:.2f}**" if significant else f"{s:.2f}" for s, significant in
                         zip(layer.scores.scores[k], layer.scores.significant[k], strict=True)]
                lines.append(f"| {layer.tag} | {k} | {concept.images} | {classes[label]} ({share:.0%}) | "
                             + " | ".join(cells) + " |")
            random = " | ".join(f"{s:.2f}" for s in layer.scores.random_scores)
            lines.append(f"| {layer.tag} | random | | | {random} |")
        return "\n".join(lines)

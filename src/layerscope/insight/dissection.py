"""What single units detect: Network Dissection against pixel masks of concepts, on any data.

Bau, Zhou, Khosla, Oliva and Torralba ("Network Dissection: Quantifying Interpretability of Deep
Visual Representations", CVPR 2017) label a unit (a channel of a convolutional layer) with the
concept whose pixels it covers. For each unit of each convolutional layer in the layer list:

1. its threshold T: the level its activations exceed at a ``quantile`` share of all positions of
   all sample images (their P(a > T) = 0.005);
2. its map, upsampled bilinearly to the image size, is on where it reaches T;
3. its IoU with each concept: |on & mask| / |on | mask|, each summed over the sample;
4. its label: the concept of highest IoU if that IoU reaches ``iou_threshold`` (theirs 0.04), else none.

The concepts come from the data module (``concept_masks``): on ``shapes`` its exact part edges,
seven part kinds and ten objects, so each labelled unit is an edge, part or object detector; on
any data the concepts computed from the pixels (``layerscope.data.concepts``: image edges, colour
names on colour images, each class's silhouette where the background is known) of the kinds the
data's own masks lack. Each source of concepts labels the units on its own (step 4 within the
source), so the colours joined to ``shapes`` leave its labels as they were. The shares of each kind
per layer are the measured version of "edges, then parts, then objects".

The quantile used here is 0.02, not the paper's 0.005. The paper's images are 224 pixels wide;
ours are 32, where the part edges (one pixel wide) cover about 10 % of the pixels, so a unit on at
its top 0.5 % of positions reaches an IoU of at most 0.05 with them: almost no unit clears 0.04.
At 0.02 a unit covers about as many pixels as one part kind or one object class does (1 to 5 % of
all pixels), so every concept can be matched. The IoU threshold stays the paper's 0.04.

The default sample is 300 validation images, dissected before training, after every second epoch
and after the last (``insight.dissection.every_n_epochs``). How the stage shares vary between
samples of 150, 300 and 500 images, and what each costs, is measured by
``benchmarks/dissection_sample_size.py`` (figures in BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import nn

from layerscope.data.base import ConceptMasks
from layerscope.errors import UserError
from layerscope.insight import render
from layerscope.insight.base import Context, EpochView
from layerscope.insight.findings import peak
from layerscope.insight.inputs import inspected_model, model_input
from layerscope.models.layers import inspection_mode, layer_hooks, layer_tag, named_layers

log = logging.getLogger(__name__)

DETECTOR_TYPES = ("edge", "part", "object")  # the layer story's kinds, input side to output side
KINDS = (*DETECTOR_TYPES, "colour")  # the built-in kinds, in report order (a user's own come after)
KIND_COLOURS = {"edge": "C0", "part": "C1", "object": "C2", "colour": "C4"}  # in every chart
NONE = -1  # the label of a unit that detects no concept


# --- the measurement, free of logging --------------------------------------------------------------
class TopQuantile:
    """Each channel's threshold at the top ``quantile`` of its values over all batches, exactly.

    Keeps only the largest ``quantile`` share of each channel's values seen so far, and the
    channel's minimum, so a whole sample never has to be held in memory.
    """

    def __init__(self, quantile: float, images: int) -> None:
        self.quantile, self.images = quantile, images
        self.top: torch.Tensor | None = None  # (C, <= k) the largest values so far
        self.floor: torch.Tensor | None = None  # (C,) the smallest value so far

    def add(self, maps: torch.Tensor) -> None:
        """``maps`` (B, C, h, w): one batch of a layer's output."""
        values = maps.float().transpose(0, 1).flatten(1)
        keep = max(1, math.ceil(self.quantile * self.images * maps.shape[-1] * maps.shape[-2]))
        low = values.min(dim=1).values
        if self.top is not None and self.floor is not None:
            values = torch.cat([self.top, values], dim=1)
            low = torch.minimum(self.floor, low)
        self.top = values.topk(min(keep, values.shape[1]), dim=1, sorted=False).values
        self.floor = low

    def thresholds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, floor), each (C,): the smallest of the top values, and the smallest value of all."""
        if self.top is None or self.floor is None:
            raise RuntimeError("no values were added")
        return self.top.min(dim=1).values, self.floor


def active(maps: torch.Tensor, threshold: torch.Tensor, floor: torch.Tensor, size: int) -> torch.Tensor:
    """bool (B, C, size, size): where each unit's map, upsampled bilinearly, reaches its threshold.

    Values tied at the threshold count, except at the unit's floor (a ReLU's zero): a unit that
    is silent on most pixels is on only where it is above its floor, never everywhere.
    """
    maps = maps.float()
    if maps.shape[-2:] != (size, size):
        # Channels-last: the CPU kernel is about four times faster on it than on NCHW.
        maps = maps.contiguous(memory_format=torch.channels_last)
        maps = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)
    threshold, floor = threshold[None, :, None, None], floor[None, :, None, None]
    return (maps >= threshold) & (maps > floor)


@dataclass
class ConceptCodes:
    """Each pixel's set of concepts as one number, so an overlap count is one lookup per on-pixel.

    The concepts overlap (an edge pixel also lies in a part and an object), but a sample holds few
    distinct combinations of them: ``shapes`` about a hundred of 2^18.
    """

    ids: torch.Tensor  # int64 (N, H, W): the index of each pixel's combination of concepts
    combos: torch.Tensor  # float64 (M, K): 1 where combination m holds concept k

    @classmethod
    def of(cls, concepts: torch.Tensor) -> ConceptCodes:
        """From bool masks (N, K, H, W)."""
        pixels = concepts.permute(0, 2, 3, 1)  # (N, H, W, K)
        count = concepts.shape[1]
        if count < 63:  # each pixel's concepts as the bits of one integer: unique() on numbers is fast
            bits = 1 << torch.arange(count, dtype=torch.int64, device=concepts.device)
            codes, ids = torch.unique((pixels.to(torch.int64) * bits).sum(dim=-1), return_inverse=True)
            combos = (codes[:, None] & bits).ne(0)
        else:
            combos, ids = torch.unique(pixels.reshape(-1, count), dim=0, return_inverse=True)
        return cls(ids.view(concepts.shape[0], *concepts.shape[2:]), combos.double())


class OverlapCounter:
    """Sums, over batches, each unit's on-pixels, each concept's pixels and their intersections.

    Upsamples only the maps that can reach their threshold somewhere: a bilinear upsampling never
    exceeds the largest value it interpolates, so a map whose peak is below the threshold stays
    off. At a top quantile of 0.02 that skips most maps, and upsampling is the costly step. Counts
    each unit's on-pixels per combination of concepts (``ConceptCodes``) and turns them into
    counts per concept at the end: one lookup per on-pixel instead of one per concept.
    """

    def __init__(self, threshold: torch.Tensor, floor: torch.Tensor, combos: torch.Tensor) -> None:
        self.threshold, self.floor = threshold, floor
        self.combos = combos.to(threshold.device)
        self.on_by_combo = torch.zeros(  # (C, M) each unit's on-pixels in each combination
            len(threshold), len(combos), dtype=torch.int64, device=threshold.device
        )

    def add(self, maps: torch.Tensor, ids: torch.Tensor) -> None:
        """``maps`` (B, C, h, w) a layer's output; ``ids`` (B, H, W) the images' concept codes."""
        peak = maps.flatten(2).amax(dim=2).float()
        image, unit = torch.nonzero((peak >= self.threshold) & (peak > self.floor), as_tuple=True)
        on = active(maps[image, unit][None], self.threshold[unit], self.floor[unit], ids.shape[-1])
        row, col, pair = torch.nonzero(on[0].permute(1, 2, 0), as_tuple=True)  # memory order: fastest
        width = self.on_by_combo.shape[1]
        combo = ids.to(maps.device)[image[pair], row, col]
        counts = torch.bincount(unit[pair] * width + combo, minlength=self.on_by_combo.numel())
        self.on_by_combo += counts.view_as(self.on_by_combo)

    def iou(self, concept_area: torch.Tensor) -> torch.Tensor:
        """(C, K) intersection over union, each summed over the sample as in the paper.

        ``concept_area`` (K,): each concept's pixels over the same images.
        """
        intersection = (self.on_by_combo.double() @ self.combos).float()  # exact: integer counts
        unit_area = self.on_by_combo.sum(dim=1).float()
        union = unit_area[:, None] + concept_area.to(unit_area) - intersection
        return intersection / union.clamp_min(1)


def label_units(
    iou: torch.Tensor, iou_threshold: float, groups: list[list[int]] | None = None
) -> torch.Tensor:
    """(C, G) each unit's best concept of each group of concepts (``ConceptMasks.groups``: one per
    source) where its IoU reaches ``iou_threshold``, else ``NONE``; one group of all without ``groups``."""
    columns = []
    for group in groups or [list(range(iou.shape[1]))]:
        best, at = iou[:, group].max(dim=1)
        columns.append(torch.where(best >= iou_threshold, torch.tensor(group)[at], NONE))
    return torch.stack(columns, dim=1)


def detector_shares(labels: torch.Tensor, kinds: list[str]) -> dict[str, float]:
    """The share of a layer's units that detect a concept of each kind there is a concept of.

    ``labels`` (C, G) from :func:`label_units`. The groups hold different kinds (the computed
    concepts fill the kinds a data set's own lack), so a unit counts at most once per kind.
    """
    units = max(1, len(labels))
    present = [kind for kind in KINDS if kind in kinds] + [k for k in dict.fromkeys(kinds) if k not in KINDS]
    detects = {kind: torch.zeros(len(labels), dtype=torch.bool) for kind in present}
    for column in labels.T.tolist():
        for unit, concept in enumerate(column):
            if concept != NONE:
                detects[kinds[concept]][unit] = True
    return {kind: int(detects[kind].sum()) / units for kind in present}


@dataclass
class LayerDissection:
    """One convolutional layer's units, dissected."""

    index: int  # position in the layer list
    name: str
    threshold: torch.Tensor  # (C,)
    floor: torch.Tensor  # (C,)
    iou: torch.Tensor  # (C, K)
    labels: torch.Tensor  # (C, G) concept index per group of concepts (one per source), or NONE
    peak: torch.Tensor  # (N, C) each unit's largest activation on each sample image


# Each layer's maps of the whole sample are kept between the two steps (thresholds, then overlaps)
# while they fit in this many bytes: one forward pass instead of two. ResNet-20 on 300 images of
# 32 x 32 needs about 230 MB; larger models and samples take the second pass instead.
KEEP_MAPS_BYTES = 512 * 2**20


def dissect(
    model: nn.Module,
    forward: Callable[[torch.Tensor], Any],
    images: torch.Tensor,
    concepts: torch.Tensor,
    quantile: float,
    iou_threshold: float,
    batch_size: int = 250,
    keep_maps_bytes: int = KEEP_MAPS_BYTES,
    groups: list[list[int]] | None = None,
) -> list[LayerDissection]:
    """Dissect every layer of ``model``'s layer list whose output is a map (B, C, h, w).

    ``forward`` runs the model on a batch of ``images``; ``concepts`` bool (N, K, H, W) are the
    images' concept masks, labelled group by group (``groups``: all in one by default). Thresholds
    first, then overlaps: from the maps kept in memory where they fit in ``keep_maps_bytes``, else
    from a second inspection pass.
    """
    layers = named_layers(model)
    first = _Thresholds(quantile, len(images), keep_maps_bytes)
    _passes(model, layers, forward, images, batch_size, first.measure)
    codes = ConceptCodes.of(concepts)
    counters = {index: OverlapCounter(*q.thresholds(), codes.combos) for index, q in first.quantiles.items()}
    if first.kept is not None:
        _count_kept(counters, first.kept, codes, len(images), batch_size)
        first.kept = None  # the maps may be large: let them go before the IoUs are worked out
    else:
        _count_in_second_pass(counters, codes, model, layers, forward, images, batch_size)
    concept_area = concepts.transpose(0, 1).flatten(1).sum(dim=1, dtype=torch.float32)
    results = []
    for index, counter in sorted(counters.items()):
        iou = counter.iou(concept_area).cpu()
        threshold, floor = (t.cpu() for t in first.quantiles[index].thresholds())
        results.append(LayerDissection(
            index, layers[index][0], threshold, floor, iou, label_units(iou, iou_threshold, groups),
            torch.cat(first.peaks[index]),
        ))
    return results


class _Thresholds:
    """The first inspection pass: each map layer's activation quantiles and per-image peaks, and its
    maps themselves while they fit in ``room`` bytes (else none are kept: ``kept`` is None)."""

    def __init__(self, quantile: float, images: int, room: int) -> None:
        self.quantile, self.images, self.room = quantile, images, room
        self.quantiles: dict[int, TopQuantile] = {}
        self.peaks: dict[int, list[torch.Tensor]] = {}
        self.kept: dict[int, list[torch.Tensor]] | None = {}

    def measure(self, index: int, output: torch.Tensor) -> None:
        if output.dim() != 4:
            return
        self.quantiles.setdefault(index, TopQuantile(self.quantile, self.images)).add(output)
        self.peaks.setdefault(index, []).append(output.float().flatten(2).amax(2).cpu())
        self.room -= output.numel() * output.element_size()
        if self.kept is not None and self.room >= 0:
            self.kept.setdefault(index, []).append(output.clone())  # the model may change it in place
        else:
            self.kept = None


def _count_kept(
    counters: dict[int, OverlapCounter], kept: dict[int, list[torch.Tensor]], codes: ConceptCodes,
    images: int, batch_size: int,
) -> None:
    """Overlaps from the maps the first pass kept, batch by batch as they were recorded."""
    for batch, start in enumerate(range(0, images, batch_size)):
        for index, counter in counters.items():
            counter.add(kept[index][batch], codes.ids[start : start + batch_size])


def _count_in_second_pass(
    counters: dict[int, OverlapCounter], codes: ConceptCodes, model: nn.Module,
    layers: list[tuple[str, nn.Module]], forward: Callable[[torch.Tensor], Any], images: torch.Tensor,
    batch_size: int,
) -> None:
    """Overlaps from a second inspection pass, where the maps did not fit in memory."""
    batch_concepts: list[torch.Tensor] = []

    def overlap(index: int, output: torch.Tensor) -> None:
        if index in counters:
            counters[index].add(output, batch_concepts[0])

    def with_concepts(start: int) -> None:
        batch_concepts[:] = [codes.ids[start : start + batch_size]]

    _passes(model, layers, forward, images, batch_size, overlap, with_concepts)


def _passes(
    model: nn.Module, layers: list[tuple[str, nn.Module]], forward: Callable[[torch.Tensor], Any],
    images: torch.Tensor, batch_size: int, on_output: Callable[[int, torch.Tensor], None],
    before_batch: Callable[[int], None] | None = None,
) -> None:
    with inspection_mode(model), layer_hooks(layers, on_output):
        for start in range(0, len(images), batch_size):
            if before_batch is not None:
                before_batch(start)
            forward(images[start : start + batch_size])


# --- the view ------------------------------------------------------------------------------------
@dataclass
class Detector:
    concept: int
    layer: LayerDissection
    unit: int
    iou: float


@dataclass
class DissectionResult:
    """One dissection of the model: when, on which images, and each convolutional layer's units."""

    step: int
    layers: list[LayerDissection]
    shares: list[dict[str, float]]  # per layer: the share of edge, part and object detectors
    concepts: ConceptMasks  # the concepts' names, kinds and masks
    images: torch.Tensor  # uint8 (N, C, H, W): the images the units were scored on
    quantile: float  # a unit is on at this top share of its activations
    iou_threshold: float  # a unit detects its best concept if their IoU reaches this

    @property
    def tags(self) -> list[str]:
        return [layer_tag(layer.index, layer.name) for layer in self.layers]

    def layer(self, index: int) -> LayerDissection | None:
        """The dissection of layer ``index`` of the layer list, None where it has no map."""
        return next((layer for layer in self.layers if layer.index == index), None)

    def findings(self, first: DissectionResult) -> list[str]:
        """Where each detector type peaked at this dissection (the latest), and at the ``first``."""
        method = (f"Network Dissection of every convolutional unit on {len(self.images)} validation "
                  f"images (top {self.quantile:.1%} of activations, IoU >= {self.iou_threshold})")
        lines = []
        for label, result in (("at the end", self), ("before training", first)):
            peaks = []
            for kind in result.shares[0]:
                layer, value = peak([s[kind] for s in result.shares], result.tags)
                peaks.append(f"{kind} detectors {value:.0%} of the units of `{layer}`" if value > 0
                             else f"no {kind} detectors")
            lines.append(f"{method}, {label} (step {result.step}): the most were " + "; ".join(peaks) + ".")
        return lines


def detector_chart(
    axes: Axes, result: DissectionResult, fontsize: float = 7, title: str | None = None
) -> None:
    """The share of each detector kind per layer, input side on the left: the kinds of the first
    group of concepts stacked (a unit has one label there), those of other groups as lines (their
    units are labelled on their own, and may also be counted in the stack)."""
    depth = range(len(result.layers))
    bottom = [0.0] * len(result.layers)
    first = {result.concepts.kinds[k] for k in result.concepts.groups()[0]}
    for kind in result.shares[0] if result.shares else []:
        values = [share[kind] for share in result.shares]
        if kind in first:
            axes.bar(depth, values, bottom=bottom, color=KIND_COLOURS.get(kind), label=f"{kind} detectors")
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        else:
            label = f"{kind} detectors (own labels)"
            axes.plot(depth, values, "o-", color=KIND_COLOURS.get(kind), label=label)
    axes.set_xticks(list(depth), result.tags, rotation=70, fontsize=fontsize)
    axes.set_xlabel("convolutional layer (input side -> output side)", fontsize=fontsize + 1)
    axes.set_ylabel("share of the layer's units", fontsize=fontsize + 1)
    axes.set_ylim(0, 1)
    axes.set_title(title or (
        f"Network dissection, epoch {result.step}: units whose top {result.quantile:g} of activations "
        f"overlap a concept with IoU >= {result.iou_threshold:g}"
    ), fontsize=fontsize + 2)
    axes.legend(loc="upper left", fontsize=fontsize)


def best_unit(layer: LayerDissection, concepts: list[int] | None = None) -> Detector:
    """The unit of ``layer`` whose IoU with some concept (of ``concepts``, default all) is the
    highest, labelled or not."""
    columns = torch.tensor(concepts) if concepts is not None else torch.arange(layer.iou.shape[1])
    flat = int(layer.iou[:, columns].argmax())
    unit, at = divmod(flat, len(columns))
    concept = int(columns[at])
    return Detector(concept, layer, unit, float(layer.iou[unit, concept]))


def best_detectors(layers: list[LayerDissection], concept_count: int) -> list[Detector]:
    """For each concept that some unit detects, the unit (of any layer) that detects it best."""
    best: dict[int, Detector] = {}
    for layer in layers:
        for unit, labels in enumerate(layer.labels.tolist()):
            for concept in labels:
                iou = float(layer.iou[unit, concept]) if concept != NONE else 0.0
                if concept != NONE and (concept not in best or iou > best[concept].iou):
                    best[concept] = Detector(concept, layer, unit, iou)
    return [best[c] for c in range(concept_count) if c in best]


def detector_pictures(
    trainer: L.Trainer, pl_module: L.LightningModule, images: torch.Tensor, detectors: list[Detector],
    count: int,
) -> list[torch.Tensor]:
    """For each detector, the ``count`` images that excite its unit most, dimmed where it is off.

    One inspection pass over all the images shown: (count, 3, 2 * size, 2 * size) per detector.
    """
    count = min(count, len(images))
    shown = torch.cat([d.layer.peak[:, d.unit].topk(count).indices for d in detectors])
    outputs: dict[int, torch.Tensor] = {}
    wanted = {d.layer.index for d in detectors}

    def keep(index: int, output: torch.Tensor) -> None:
        if index in wanted:
            outputs[index] = output.float().cpu()

    model = inspected_model(pl_module)
    with inspection_mode(model), layer_hooks(named_layers(model), keep):
        pl_module(model_input(trainer, pl_module, images[shown]))
    size = images.shape[-1]
    pictures = render.display_images(images[shown])
    rows = []
    for row, detector in enumerate(detectors):
        span = slice(row * count, (row + 1) * count)
        unit = slice(detector.unit, detector.unit + 1)
        maps = outputs[detector.layer.index][span, unit]
        on = active(maps, detector.layer.threshold[unit], detector.layer.floor[unit], size).float()
        rows.append(render.resize(pictures[span] * (0.25 + 0.75 * on), 2 * size))
    return rows


class Dissection(EpochView):
    """``dissection/<edge|part|object>/NN_<layer>``: the share of each convolutional layer's units
    that detect a concept of that type; the chart ``dissection/detectors_by_depth``; the best
    detector of each concept over a few images (``dissection/best_detectors``); and a table of every
    labelled unit (TEXT ``dissection/detectors``). On data without concept masks it logs nothing.
    Each dissection is a ``DissectionResult`` in the run's results (for the layer story and the
    guide's findings).
    """

    def __init__(
        self, every_n_epochs: int = 1, sample_size: int = 300, quantile: float = 0.02,
        iou_threshold: float = 0.04, images_per_detector: int = 6, batch_size: int = 250,
    ) -> None:
        super().__init__(every_n_epochs)
        if not 0 < quantile < 1:
            raise UserError(f"insight.dissection.quantile={quantile} must be between 0 and 1 "
                            "(0.02 by default)")
        self.concept_images, self.quantile, self.iou_threshold = sample_size, quantile, iou_threshold
        self.images_per_detector, self.batch_size = images_per_detector, batch_size
        # The sample images and their masks (rendered at the first drawing), or None without masks.
        self._concepts: tuple[torch.Tensor, ConceptMasks] | None = None
        self._looked = False
        self._said: set[str] = set()

    def _say_once(self, message: str) -> None:
        if message not in self._said:
            log.info(message)
            self._said.add(message)

    def concepts(self, context: Context) -> tuple[torch.Tensor, ConceptMasks] | None:
        """The first validation images and their concept masks (rendered once), or None without masks."""
        if not self._looked:
            data = context.data
            count = min(self.concept_images, len(data.val))
            masks = data.concept_masks(torch.arange(count))
            if masks is None:
                self._say_once("dissection: no concept masks for these images, so it logs nothing")
            self._concepts = None if masks is None else (data.val.images[:count], masks)
            self._looked = True
        return self._concepts

    def draw(self, context: Context) -> None:
        sample = self.concepts(context)
        if sample is None:
            return
        images, concepts = sample
        writer, step = context.writer, context.step
        layers = dissect(
            context.model, context.forward(), images, concepts.masks, self.quantile, self.iou_threshold,
            self.batch_size, groups=concepts.groups(),
        )
        if not layers:
            self._say_once("dissection: the model has no convolutional layers, so it logs nothing")
            return
        shares = [detector_shares(layer.labels, concepts.kinds) for layer in layers]
        result = DissectionResult(step, layers, shares, concepts, images, self.quantile, self.iou_threshold)
        context.results.add(result)
        for tag, share in zip(result.tags, shares, strict=True):
            for kind, value in share.items():
                writer.add_scalar(f"dissection/{kind}/{tag}", value, step)
        figure, axes = render.new_figure(max(6.0, 0.4 * len(layers)), 4.2)
        detector_chart(axes, result)
        context.log_figure("dissection/detectors_by_depth", figure)
        detectors = best_detectors(layers, len(concepts.names))
        if detectors:
            picture = self._rows(context, images, concepts.names, detectors)
            render.log_image(writer, "dissection/best_detectors", picture, step)
        table = self._table(layers, concepts.names, concepts.kinds, len(images))
        writer.add_text("dissection/detectors", table, step)

    def _rows(
        self, context: Context, images: torch.Tensor, names: list[str], detectors: list[Detector]
    ) -> np.ndarray:
        """A row per concept: its best unit's on-region over the images that excite the unit most."""
        rows = detector_pictures(
            context.trainer, context.pl_module, images, detectors, self.images_per_detector
        )
        size = images.shape[-1]
        tile = 2 * size + 2  # a picture drawn at twice its size, and the grid's padding
        captions = [
            (2 + tile * r + size,
             f"{names[d.concept]}: {layer_tag(d.layer.index, d.layer.name)} unit {d.unit}, IoU {d.iou:.2f}")
            for r, d in enumerate(detectors)
        ]
        title = f"Epoch {context.step}: each concept's best detector, bright where it is on"
        return render.captioned(render.grid(rows), captions, title, margin=360)

    def _table(self, layers: list[LayerDissection], names: list[str], kinds: list[str], images: int) -> str:
        lines = [
            f"Network dissection (Bau et al. 2017) on {images} validation images: a unit is labelled with "
            f"the concept its top {self.quantile:g} of activations overlaps best, where that IoU is at "
            f"least {self.iou_threshold:g}.",
            "",
            "| layer | unit | concept | type | IoU |",
            "|---|---|---|---|---|",
        ]
        for layer in layers:
            for unit, concept in ((u, c) for u, labels in enumerate(layer.labels.tolist()) for c in labels):
                if concept != NONE:
                    lines.append(f"| {layer_tag(layer.index, layer.name)} | {unit} | {names[concept]} | "
                                 f"{kinds[concept]} | {float(layer.iou[unit, concept]):.3f} |")
        return "\n".join(lines)

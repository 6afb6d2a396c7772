"""One page per run for the layer story: a few layers, before training and after it, side by side.

``layer_story.png`` in the run folder (and ``layer_story`` in TensorBoard's IMAGES) shows layer 1,
the middle layer of each stage and the last convolution (:func:`story_layers`), at step 0 and at
the end of training. For each layer and moment:

- its most selective channels (chosen at step 0, as ``top_patches`` chooses them): the image
  optimised to excite each (feature visualisation, as ``feature_vis``), then the validation
  patches that excite it most (as ``top_patches``);
- its best unit by Network Dissection (as ``dissection``): the unit with the highest IoU with any
  concept of the data's own (on shapes, not the colours joined to them), bright where it is on
  over the images that excite it most, with that IoU and the layer's shares of each kind of
  detector;

and under them the dissection and probe charts of both moments. Every panel is a measurement made
as in the view it comes from, and the captions say which; the page adds none of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec

from layerscope.files import write_atomically
from layerscope.insight import render
from layerscope.insight.base import Context, EpochView
from layerscope.insight.capture import LayerAnatomy
from layerscope.insight.dissection import DissectionResult, best_unit, detector_chart, detector_pictures
from layerscope.insight.feature_vis import ChannelRows, readable_layers
from layerscope.insight.probes import LayerProbes, ProbeResult
from layerscope.models.layers import layer_tag

log = logging.getLogger(__name__)

DPI = 100  # one picture pixel is one pixel of the page


def story_layers(anatomy: list[LayerAnatomy], most: int = 6) -> list[int]:
    """The layers the page shows (indices): :func:`readable_layers`, thinned to ``most`` evenly spread
    ones (the first and the last kept) where a model without stages has more."""
    shown = readable_layers(anatomy)
    if len(shown) <= most:
        return shown
    picks = np.linspace(0, len(shown) - 1, most).round().astype(int)
    return [shown[i] for i in sorted(set(picks.tolist()))]


@dataclass
class Moment:
    """What the page shows of one moment of training."""

    step: int
    channels: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (3, H, W) rows of tiles
    detectors: dict[int, tuple[torch.Tensor, str]] = field(default_factory=dict)  # layer -> picture, caption
    dissection: DissectionResult | None = None
    probes: ProbeResult | None = None


class LayerStory(EpochView):
    """``layer_story.png`` (run folder) and ``layer_story`` (IMAGES): the layer story of this run on one page.

    It draws at step 0 and after the last epoch (or, where training stops early, at its end), and it
    reads the dissection and probe results of those moments from the run's results, so ``Insight``
    draws it after the views that measure them.
    """

    once_per_run = True  # for the run's time accounting: drawn at the start and the end only
    reads_results = True  # the dissection's and the probes' results of the same moment

    def __init__(
        self, channels: int = 2, patches: int = 4, feature_vis_steps: int = 64, detector_images: int = 3,
        sample_size: int = 2000, max_layers: int = 6, seed: int = 0, file: str = "layer_story.png",
    ) -> None:
        super().__init__(every_n_epochs=1)
        self.channels, self.patches, self.feature_vis_steps = channels, patches, feature_vis_steps
        self.detector_images, self.sample_size, self.max_layers = detector_images, sample_size, max_layers
        self.seed, self.file = seed, file
        self.rows = ChannelRows(channels, patches, feature_vis_steps, seed=seed)
        self._moments: dict[str, Moment] = {}

    # --- when -----------------------------------------------------------------------------------
    def due(self, epochs_done: int, last: bool) -> bool:
        return last

    def draw(self, context: Context) -> None:
        self._moments["start" if context.step == 0 else "end"] = self._moment(context)

    def end(self, context: Context) -> None:
        if "end" not in self._moments:  # stopped before the last epoch: the network as it is now
            self._moments["end"] = self._moment(context)
        moments = [self._moments[key] for key in ("start", "end") if key in self._moments]
        picture = self.page(context, moments)
        path = Path(context.trainer.default_root_dir) / self.file
        write_atomically(path, render.png_bytes(picture))
        render.log_image(context.writer, "layer_story", picture, moments[-1].step)
        log.info("The layer story of this run: %s", path)

    # --- measuring --------------------------------------------------------------------------------
    def _moment(self, context: Context) -> Moment:
        sample, anatomy = context.sample(self.sample_size), context.anatomy()
        shown = story_layers(anatomy, self.max_layers)
        moment = Moment(context.step, channels=self.rows.draw(context, sample, shown))
        # What the dissection and the probes measured at this step, where they are on and did.
        moment.dissection = context.results.at(DissectionResult, context.step)
        moment.probes = context.results.at(ProbeResult, context.step)
        if moment.dissection is not None:
            self._detectors(context, moment, shown)
        return moment

    def _detectors(self, context: Context, moment: Moment, shown: list[int]) -> None:
        result = moment.dissection
        if result is None:
            return
        layers = [layer for index in shown if (layer := result.layer(index)) is not None]
        if not layers:
            return
        # The story's concepts: the data's own where it has them (shapes' edges, parts and objects),
        # not the colours joined to them; the computed ones on data without masks of its own.
        story = result.concepts.groups()[0]
        best = [best_unit(layer, story) for layer in layers]
        pictures = detector_pictures(
            context.trainer, context.pl_module, result.images, best, self.detector_images
        )
        threshold = result.iou_threshold
        for detector, picture in zip(best, pictures, strict=True):
            shares = result.shares[result.layers.index(detector.layer)]
            name, kind = result.concepts.names[detector.concept], result.concepts.kinds[detector.concept]
            verdict = "a detector" if detector.iou >= threshold else f"below {threshold:g}: no detector"
            caption = (f"best unit {detector.unit}: {name} ({kind})\nIoU {detector.iou:.3f} ({verdict})\n"
                       + " / ".join(f"{k} {v:.0%}" for k, v in shares.items()) + " of its units")
            moment.detectors[detector.layer.index] = (render.tile_grid(picture, len(picture)), caption)

    # --- drawing --------------------------------------------------------------------------------
    def page(self, context: Context, moments: list[Moment]) -> np.ndarray:
        """The page as an (H, W, 3) uint8 picture."""
        anatomy = context.anatomy()
        shown = sorted(moments[-1].channels)
        with_detectors = any(m.detectors for m in moments)
        rows: list[tuple[str, Moment]] = [("channels", m) for m in moments]
        rows += [("detectors", m) for m in moments] if with_detectors else []
        cell = max(p.shape[-1] for m in moments for p in m.channels.values())
        column = cell / DPI + 0.3  # inches
        heights = [self._row_height(kind, moment) for kind, moment in rows] + [4.2]
        figure = Figure(figsize=(1.0 + column * len(shown), 1.3 + sum(heights)), dpi=DPI)
        figure.set_layout_engine("constrained")
        grid = figure.add_gridspec(len(rows) + 1, len(shown), height_ratios=heights)
        for row, (kind, moment) in enumerate(rows):
            for col, index in enumerate(shown):
                axes = figure.add_subplot(grid[row, col])
                self._cell(axes, kind, moment, index)
                if row == 0:
                    tag = layer_tag(index, anatomy[index].name)
                    axes.set_title(f"{tag}\nreceptive field {anatomy[index].receptive_field} px\n\n"
                                   + axes.get_title(), fontsize=9)
                if col == 0:
                    what = "channels" if kind == "channels" else "best unit"
                    axes.set_ylabel(f"{what}\n{self._when(moment.step)}", fontsize=10)
        self._charts(figure, grid[len(rows), :], moments)
        title = self._title(context, moments)
        figure.suptitle(title, fontsize=10, x=0.01, horizontalalignment="left")
        return render.figure_pixels(figure)

    @staticmethod
    def _when(step: int) -> str:
        return "step 0 (untrained)" if step == 0 else f"epoch {step}"

    @staticmethod
    def _row_height(kind: str, moment: Moment) -> float:
        if kind == "channels":
            pictures = list(moment.channels.values())
        else:
            pictures = [picture for picture, _ in moment.detectors.values()]
        return max((p.shape[-2] for p in pictures), default=40) / DPI + (0.35 if kind == "channels" else 0.65)

    @staticmethod
    def _cell(axes: Axes, kind: str, moment: Moment, index: int) -> None:
        axes.set_xticks([])
        axes.set_yticks([])
        if kind == "channels":
            axes.imshow(moment.channels[index].permute(1, 2, 0).numpy(), interpolation="nearest")
            axes.set_title("optimised image | top patches, per channel", fontsize=8)
        elif index in moment.detectors:
            picture, caption = moment.detectors[index]
            axes.imshow(picture.permute(1, 2, 0).numpy(), interpolation="nearest")
            axes.set_title(caption, fontsize=8)
        else:
            axes.set_title("not dissected at this step", fontsize=8)

    @staticmethod
    def _charts(figure: Figure, place: SubplotSpec, moments: list[Moment]) -> None:
        """The dissection charts of both moments, then their probe charts, in one row."""
        panels: list[DissectionResult | ProbeResult] = []
        panels += [m.dissection for m in moments if m.dissection is not None]
        panels += [m.probes for m in moments if m.probes is not None]
        if not panels:
            return
        inner = place.subgridspec(1, len(panels))
        for col, result in enumerate(panels):
            axes = figure.add_subplot(inner[0, col])
            when = LayerStory._when(result.step)
            if isinstance(result, DissectionResult):
                detector_chart(axes, result, fontsize=7, title=f"Detectors per layer, {when}")
            elif isinstance(result, ProbeResult):
                LayerProbes.chart(axes, result, fontsize=7, title=f"Linear probes per layer, {when}")

    def _title(self, context: Context, moments: list[Moment]) -> str:
        model = context.model
        accuracy = context.trainer.callback_metrics.get("val/acc")
        score = f", validation accuracy {float(accuracy):.2%}" if accuracy is not None else ""
        when = " and ".join(self._when(m.step) for m in moments)
        lines = [
            f"What the layers of {type(model).__name__} ({len(context.anatomy())} layers) "
            f"showed at {when}{score}",
            f"Channels: each layer's {self.channels} most selective channels (chosen at the first drawing): "
            f"the image optimised to excite each ({self.feature_vis_steps} steps from seeded noise), then"
            f" the {self.patches} validation patches (of {self.sample_size}) where it peaks, each "
            "its receptive field.",
        ]
        dissected = next((m.dissection for m in reversed(moments) if m.dissection is not None), None)
        if dissected is not None:
            lines.append(
                f"Best unit: the layer's unit whose on-region (its top {dissected.quantile:g} of "
                f"activations) overlaps a concept of {len(dissected.images)} validation images best, bright "
                "where it is on; "
                f"IoU >= {dissected.iou_threshold:g} makes it a detector (Bau et al. 2017)."
            )
        else:
            lines.append("No dissection in this run: it needs convolutional layers and insight.dissection.")
        return "\n".join(lines)


"""Where the network is wrong: confusion matrix, misclassified images, precision-recall per class.

Built from the validation pass itself (the logits ``validation_step`` returns), so it costs no
extra forward pass. Under DDP it covers the rank-zero share of the validation set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from layerscope.insight import render
from layerscope.insight.base import Context, EpochView
from layerscope.insight.inputs import InsightData


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, classes: int) -> torch.Tensor:
    """(true, predicted) counts."""
    return torch.bincount(labels * classes + predicted, minlength=classes * classes).view(classes, classes)


class Mistakes(EpochView):
    """``mistakes/confusion_matrix`` and ``mistakes/misclassified`` (figures), ``pr_curves/<class>``."""

    before_training = False  # an untrained network's mistakes teach nothing

    def __init__(self, every_n_epochs: int = 1, max_images: int = 32, pr_curves: bool = True) -> None:
        super().__init__(every_n_epochs)
        self.max_images, self.pr_curves = max_images, pr_curves
        self._reset()

    def _reset(self) -> None:
        self._probs: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._wrong: list[tuple[torch.Tensor, int, int]] = []

    def validation_start(self, context: Context) -> None:
        self._reset()

    def validation_batch(self, context: Context, outputs: Any, batch: Any) -> None:
        if not isinstance(outputs, torch.Tensor):  # validation_step returns the logits
            return
        images, labels = batch
        probs = outputs.detach().float().softmax(dim=1).cpu()
        labels = labels.cpu()
        self._probs.append(probs)
        self._labels.append(labels)
        room = self.max_images - len(self._wrong)
        if room > 0:
            predicted = probs.argmax(1)
            wrong = torch.nonzero(predicted != labels).flatten()[:room]
            shown = self._unnormalise(context.data, images[wrong]).cpu()
            self._wrong += [(shown[i], int(labels[w]), int(predicted[w])) for i, w in enumerate(wrong)]

    @staticmethod
    def _unnormalise(data: InsightData, images: torch.Tensor) -> torch.Tensor:
        info = data.info
        mean = torch.tensor(info["mean"], device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(info["std"], device=images.device).view(1, -1, 1, 1)
        return render.as_rgb((images.float() * std + mean).clamp(0, 1))

    def draw(self, context: Context) -> None:
        if not self._probs:
            return
        writer, step = context.writer, context.step
        classes = list(context.data.classes)
        probs, labels = torch.cat(self._probs), torch.cat(self._labels)
        counts = confusion_matrix(labels, probs.argmax(1), len(classes))
        confusion = self._confusion_figure(counts, classes, step)
        context.log_figure("mistakes/confusion_matrix", confusion)
        if self._wrong:
            context.log_figure("mistakes/misclassified", self._mistakes_figure(classes, step))
        if self.pr_curves:
            for index, name in enumerate(classes):
                writer.add_pr_curve(f"pr_curves/{name}", labels == index, probs[:, index], step)
        self._reset()

    @staticmethod
    def _confusion_figure(counts: torch.Tensor, classes: list[str], step: int) -> Figure:
        share = counts.float() / counts.sum(1, keepdim=True).clamp_min(1)
        size = max(5.0, 0.45 * len(classes) + 2)
        figure, axes = render.new_figure(size, size)
        axes.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=1)
        if len(classes) <= 20:
            for (t, p), value in np.ndenumerate(counts.numpy()):
                if value:
                    colour = "white" if share[t, p] > 0.5 else "black"
                    axes.text(p, t, str(value), ha="center", va="center", fontsize=7, color=colour)
        ticks = range(len(classes))
        axes.set_xticks(ticks, classes, rotation=60, fontsize=7)
        axes.set_yticks(ticks, classes, fontsize=7)
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")
        accuracy = counts.diag().sum().item() / max(1, counts.sum().item())
        axes.set_title(f"Confusion matrix, epoch {step} (validation accuracy {accuracy:.2%})")
        return figure

    def _mistakes_figure(self, classes: list[str], step: int) -> Figure:
        columns, pad, caption = 8, 2, 18
        tiles = torch.stack([image for image, _, _ in self._wrong])
        size = max(48, tiles.shape[-1])
        tiles = render.resize(tiles, size)
        rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
        picture = render.grid(rows, pad=pad, row_gap=caption)  # one image: far faster than subplots
        height, width = picture.shape[1:]
        figure, axes = render.new_figure(width / 60, height / 60 + 0.4)
        axes.imshow(picture.permute(1, 2, 0).numpy(), interpolation="nearest")
        for i, (_, true, predicted) in enumerate(self._wrong):
            row, col = divmod(i, columns)
            x, y = pad + col * (size + pad) + size / 2, pad + row * (size + caption) + size + 1
            label = f"{classes[true]}\n> {classes[predicted]}"
            axes.text(x, y, label, ha="center", va="top", fontsize=6, color="white")
        axes.set_axis_off()
        axes.set_title(f"Misclassified validation images, epoch {step} (true > predicted)", fontsize=9)
        return figure

"""What every insight view shares: the view interface, when a view draws, what it draws from.

A view is a plain class. ``Insight`` (``callback.py``), the one Lightning callback of the package,
calls it at the moments it asks for and hands it a :class:`Context`: the trainer and the module, the
TensorBoard writer, the step, the shared validation sample, the layer anatomy and the results the
views measured so far. Views never look for each other: what one measured and another reads (the
dissection and probes that the layer story shows) passes through :class:`Results`.

Epoch views draw once before training (step 0: the untrained network) and after every
``every_n_epochs``-th validation epoch and the last, with step = epochs done, so TensorBoard's image
slider walks through training. Only the rank-zero process draws; the others do no insight work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from layerscope.errors import UserError
from layerscope.insight import render
from layerscope.insight.capture import LayerAnatomy
from layerscope.insight.inputs import InsightData, insight_data, inspected_model, model_anatomy, model_input
from layerscope.insight.sample import Sample, Samples

R = TypeVar("R")


def tensorboard_writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The run's TensorBoard writer, or None where no TensorBoard logger is configured."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


@runtime_checkable
class Finding(Protocol):
    """A measured result that can say, in a few sentences with its numbers, what it showed."""

    step: int

    def findings(self, first: Any) -> list[str]:
        """What this result (the latest of its kind) showed, against ``first`` (the first one)."""
        ...


class Results:
    """What the views measured so far in this run, by kind (a result's class) and step."""

    def __init__(self) -> None:
        self._first: dict[type, Any] = {}
        self._latest: dict[type, Any] = {}

    def add(self, result: Any) -> None:
        """Keep ``result`` (an object with a ``step``) as the latest of its kind."""
        self._first.setdefault(type(result), result)
        self._latest[type(result)] = result

    def first(self, kind: type[R]) -> R | None:
        return self._first.get(kind)

    def latest(self, kind: type[R]) -> R | None:
        return self._latest.get(kind)

    def at(self, kind: type[R], step: int) -> R | None:
        """The result of ``kind`` measured at ``step``, if one was."""
        latest = self._latest.get(kind)
        return latest if latest is not None and latest.step == step else None

    def findings(self) -> list[str]:
        """Every sentence the results report, kind by kind in the order they were first measured."""
        return [line for kind, latest in self._latest.items() if isinstance(latest, Finding)
                for line in latest.findings(self._first[kind])]


class Anatomy:
    """Each named layer's parameters and receptive field, traced once per run."""

    def __init__(self) -> None:
        self._layers: list[LayerAnatomy] | None = None

    def __call__(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[LayerAnatomy]:
        if self._layers is None:
            self._layers = model_anatomy(trainer, pl_module)
        return self._layers


@dataclass
class Context:
    """What a view draws from at one moment of the run."""

    trainer: L.Trainer
    pl_module: L.LightningModule
    writer: SummaryWriter
    step: int  # the step the drawing is logged at: epochs done (0 before training)
    results: Results = field(default_factory=Results)
    samples: Samples = field(default_factory=Samples)
    sample_size: int = 0  # images of this moment's shared sample (the largest size of the views due)
    layers: Anatomy = field(default_factory=Anatomy)
    margins: render.Margins = field(default_factory=render.Margins)  # the run's chart margins

    @property
    def data(self) -> InsightData:
        """The data module's share the views may read (``inputs.InsightData``)."""
        return insight_data(self.trainer)

    @property
    def model(self) -> nn.Module:
        """The network under inspection."""
        return inspected_model(self.pl_module)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Stored uint8 images as the model sees them: on its device, normalised."""
        return model_input(self.trainer, self.pl_module, images)

    def forward(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The module's forward on stored uint8 images: moved to its device, normalised."""
        return lambda images: self.pl_module(self.prepare(images))

    def sample(self, size: int) -> Sample:
        """The validation sample of this moment: at least ``size`` images, shared by the views."""
        return self.samples.sample(self.trainer, self.pl_module, max(size, self.sample_size))

    def anatomy(self) -> list[LayerAnatomy]:
        return self.layers(self.trainer, self.pl_module)

    def log_figure(self, tag: str, figure: Figure) -> None:
        """Log a chart at this moment's step, its margins measured once per run."""
        render.log_figure(self.writer, tag, figure, self.step, self.margins)


class View:
    """A view of the inside of the network: ``Insight`` calls the methods a subclass implements.

    ``draw`` is called at the epoch moments :meth:`due` picks (and before training where
    ``before_training``); the other methods at the moments their names say. A view that draws from
    the shared validation sample sets ``sample_size``; one that reads other views' results sets
    ``reads_results``, and is drawn after the others at every moment.
    """

    before_training = False  # draw at step 0, the untrained network
    once_per_run = False  # for the run's time accounting: it draws at the start and the end only
    reads_results = False  # reads what other views measured at the same moment
    sample_size = 0  # validation images of the shared sample it reads (0: none)

    def due(self, epochs_done: int, last: bool) -> bool:
        """Whether to draw after this validation epoch (``last``: the run's last epoch)."""
        return False

    def draw(self, context: Context) -> None:
        """Draw after a due validation epoch, and at step 0 where ``before_training``."""

    def start(self, context: Context) -> None:
        """When training starts (before any step-0 drawing)."""

    def before_optimizer_step(self, context: Context) -> None:
        """Every training step, before the optimizer step: gradients are complete."""

    def after_train_batch(self, context: Context) -> None:
        """Every training step, after the optimizer step."""

    def after_train_epoch(self, context: Context) -> None:
        """After each training epoch (and its validation)."""

    def validation_start(self, context: Context) -> None:
        """Before a validation pass after which this view draws."""

    def validation_batch(self, context: Context, outputs: Any, batch: Any) -> None:
        """After each batch of a validation pass after which this view draws."""

    def end(self, context: Context) -> None:
        """When training ends: the model is final, and no later step can be perturbed."""


class EpochView(View):
    """A view drawn before training and after every ``every_n_epochs``-th validation epoch and the last."""

    before_training = True  # step 0 shows the untrained network; views of mistakes skip it

    def __init__(self, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise UserError(f"insight: {type(self).__name__}'s every_n_epochs={every_n_epochs} "
                            "must be 1 or more")
        self.every_n_epochs = every_n_epochs

    def due(self, epochs_done: int, last: bool) -> bool:
        return epochs_done % self.every_n_epochs == 0 or last

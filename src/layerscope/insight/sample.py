"""The validation sample that probes and top patches look at, shared by every view drawn from it.

The layer summaries of the first validation images are recorded during the validation pass
itself, so the views cost no extra forward pass; views drawing at the same moment share one
sample. Before training (and wherever the recording fails) the sample takes a pass of its own.
"""

from __future__ import annotations

import weakref
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

from layerscope.insight.base import EpochView, tensorboard_writer
from layerscope.insight.capture import LayerAnatomy, LayerStats, StatsCollector, layer_stats
from layerscope.insight.inputs import insight_data, inspected_model, model_anatomy, model_input
from layerscope.models.layers import layer_hooks, named_layers


@dataclass
class Sample:
    """Validation images (the first ones rank zero sees) and what every layer made of them."""

    images: torch.Tensor  # uint8 (N, C, H, W), as stored
    labels: torch.Tensor  # int64 (N,)
    parts: torch.Tensor | None  # uint8 (N, P) part labels where the data set has them
    stats: list[LayerStats]


class _ValidationRecorder:
    """Summarises the named layers during the validation pass itself: no extra forward pass.

    Records the first ``size`` images of rank zero's validation batches. The images are found
    through the loader's batch indices, checked against the batch's labels; if they do not match
    (a loader we do not know), the recording is dropped and the views make a pass of their own.
    """

    def __init__(self, trainer: L.Trainer, pl_module: L.LightningModule, size: int) -> None:
        self.size, self.seen, self.failed = size, 0, False
        self.key = _sample_key(trainer, pl_module)
        self.indices: list[torch.Tensor] = []
        self._last_batch: int | None = None
        loader = trainer.val_dataloaders
        loader = loader[0] if isinstance(loader, list | tuple) else loader
        self._batches = list(loader.sampler) if loader is not None else []
        self._labels = insight_data(trainer).val.labels
        layers = named_layers(inspected_model(pl_module))
        self.collector = StatsCollector(len(layers))
        self.collector.rows = 0  # record nothing outside validation batches (other views' passes)
        self._hooks = ExitStack()
        self._hooks.enter_context(layer_hooks(layers, self.collector))

    def on_batch(self, batch: Any, batch_idx: int) -> None:
        if batch_idx == self._last_batch:  # every sample view forwards each batch
            return
        self._last_batch = batch_idx
        rows = min(len(batch[1]), self.size - self.seen)
        index = self._batches[batch_idx] if batch_idx < len(self._batches) else None
        known = isinstance(index, torch.Tensor) and len(index) >= rows
        if known and rows > 0 and not torch.equal(self._labels[index[:rows]], batch[1][:rows].cpu()):
            known = False  # the batch is not the images we think it is
        if rows <= 0 or self.failed or not known:
            self.failed = self.failed or rows > 0
            self.collector.rows = 0
            return
        self.collector.rows = rows
        self.indices.append(index[:rows])
        self.seen += rows

    def after_batch(self) -> None:
        self.collector.rows = 0

    def close(self) -> None:
        self._hooks.close()

    def sample(self, trainer: L.Trainer) -> Sample | None:
        if self.failed or not self.seen:
            return None
        val = insight_data(trainer).val
        index = torch.cat(self.indices)
        parts = None if val.parts is None else val.parts[index]
        return Sample(val.images[index], val.labels[index], parts, self.collector.stats())


def _sample_key(trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[int, int, int]:
    return (id(pl_module), trainer.global_step, trainer.current_epoch)


# Per trainer, dropped with it: a later run can never see an earlier run's sample or recorder.
_cache: weakref.WeakKeyDictionary[L.Trainer, tuple[Any, Sample]] = weakref.WeakKeyDictionary()
_recorders: weakref.WeakKeyDictionary[L.Trainer, _ValidationRecorder] = weakref.WeakKeyDictionary()


class SampleView(EpochView):
    """An epoch view drawn from a sample of validation images (shared by all such views).

    A subclass implements ``draw`` with :meth:`sample` (the images, their labels and what each
    named layer made of them) and :meth:`anatomy` (each layer's receptive field and parameters).
    """

    def __init__(self, every_n_epochs: int = 1, sample_size: int = 2000) -> None:
        super().__init__(every_n_epochs)
        self.sample_size = sample_size
        self._anatomy: list[LayerAnatomy] | None = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._due(trainer) is None or tensorboard_writer(trainer) is None:
            return
        recorder = _recorders.get(trainer)
        if recorder is None:
            _recorders[trainer] = _ValidationRecorder(trainer, pl_module, self.sample_size)
        elif recorder.seen == 0:
            recorder.size = max(recorder.size, self.sample_size)

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        recorder = _recorders.get(trainer)
        if recorder is not None:
            recorder.on_batch(batch, batch_idx)

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        recorder = _recorders.get(trainer)
        if recorder is not None:
            recorder.after_batch()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        _stop_recording(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _stop_recording(trainer)

    def sample(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Sample:
        return validation_sample(trainer, pl_module, self.sample_size)

    def anatomy(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[LayerAnatomy]:
        if self._anatomy is None:
            self._anatomy = model_anatomy(trainer, pl_module)
        return self._anatomy


def _stop_recording(trainer: L.Trainer) -> _ValidationRecorder | None:
    recorder = _recorders.pop(trainer, None)
    if recorder is not None:
        recorder.close()
    return recorder


def validation_sample(
    trainer: L.Trainer, pl_module: L.LightningModule, size: int, batch_size: int = 500
) -> Sample:
    """What the layers made of the first ``size`` validation images, at most once per step.

    Taken from the validation pass just run when it was recorded, else from a pass of its own
    (before training, say). Views drawing at the same moment share it (the largest size wins).
    """
    key = _sample_key(trainer, pl_module)
    recorder = _stop_recording(trainer)
    if recorder is not None and recorder.key == key and (recorded := recorder.sample(trainer)):
        _cache[trainer] = (key, recorded)
    cached = _cache.get(trainer)
    if cached is not None and cached[0] == key:
        return cached[1]
    val = insight_data(trainer).val
    images, labels = val.images[:size], val.labels[:size]
    parts = None if val.parts is None else val.parts[:size]
    stats, _ = layer_stats(
        lambda batch: pl_module(model_input(trainer, pl_module, batch)), inspected_model(pl_module), images,
        batch_size,
    )
    sample = Sample(images, labels, parts, stats)
    _cache[trainer] = (key, sample)
    return sample

"""The validation sample that probes and top patches look at, shared by every view drawn from it.

The layer summaries of the first validation images are recorded during the validation pass
itself, so the views cost no extra forward pass; views drawing at the same moment share one
sample. Before training (and wherever the recording fails) the sample takes a pass of its own.
:class:`Samples` holds one run's recording and sample; ``Insight`` owns it, so no state outlives
the run.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

from layerscope.insight.capture import LayerStats, StatsCollector, layer_stats
from layerscope.insight.inputs import insight_data, inspected_model, model_input
from layerscope.models.layers import layer_hooks, named_layers


@dataclass
class Sample:
    """Validation images (the first ones rank zero sees) and what every layer made of them."""

    images: torch.Tensor  # uint8 (N, C, H, W), as stored
    labels: torch.Tensor  # int64 (N,)
    parts: torch.Tensor | None  # uint8 (N, P) part labels where the data set has them
    stats: list[LayerStats]
    recorded: bool = False  # True: summarised during the validation pass; False: by a pass of its own


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
        loader = trainer.val_dataloaders
        loader = loader[0] if isinstance(loader, list | tuple) else loader
        self._batches = list(loader.sampler) if loader is not None else []
        self._labels = insight_data(trainer).val.labels
        layers = named_layers(inspected_model(pl_module))
        self.collector = StatsCollector(len(layers))
        self.collector.rows = 0  # record nothing outside validation batches (the views' own passes)
        self._hooks = ExitStack()
        self._hooks.enter_context(layer_hooks(layers, self.collector))

    def before_batch(self, batch: Any, batch_idx: int) -> None:
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
        return Sample(val.images[index], val.labels[index], parts, self.collector.stats(), recorded=True)


def _sample_key(trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[int, int, int]:
    return (id(pl_module), trainer.global_step, trainer.current_epoch)


class Samples:
    """One run's validation sample: recorded during a validation pass, or taken by a pass of its own,
    at most once per step."""

    def __init__(self) -> None:
        self._recorder: _ValidationRecorder | None = None
        self._latest: tuple[tuple[int, int, int], Sample] | None = None  # (when, sample)

    @property
    def recording(self) -> bool:
        return self._recorder is not None

    def record(self, trainer: L.Trainer, pl_module: L.LightningModule, size: int) -> None:
        """Summarise the first ``size`` images of the validation pass that is about to run."""
        self.stop()
        self._recorder = _ValidationRecorder(trainer, pl_module, size)

    def before_batch(self, batch: Any, batch_idx: int) -> None:
        if self._recorder is not None:
            self._recorder.before_batch(batch, batch_idx)

    def after_batch(self) -> None:
        if self._recorder is not None:
            self._recorder.after_batch()

    def finish(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """End the recording: its sample is the one of this step, unless it failed."""
        recorder = self.stop()
        if recorder is not None and recorder.key == _sample_key(trainer, pl_module):
            recorded = recorder.sample(trainer)
            if recorded is not None:
                self._latest = (recorder.key, recorded)

    def stop(self) -> _ValidationRecorder | None:
        """Remove the recording's hooks (at the end of a pass, of the fit, or on an error)."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.close()
        return recorder

    def sample(
        self, trainer: L.Trainer, pl_module: L.LightningModule, size: int, batch_size: int = 500
    ) -> Sample:
        """What the layers made of the first ``size`` validation images, at most once per step.

        Taken from the validation pass just run when it was recorded, else from a pass of its own
        (before training, say). Views drawing at the same moment share it: ``Insight`` records as
        many images as the largest ``sample_size`` of the views due.
        """
        key = _sample_key(trainer, pl_module)
        if self._latest is not None and self._latest[0] == key:
            return self._latest[1]
        val = insight_data(trainer).val
        images, labels = val.images[:size], val.labels[:size]
        parts = None if val.parts is None else val.parts[:size]
        stats, _ = layer_stats(
            lambda batch: pl_module(model_input(trainer, pl_module, batch)), inspected_model(pl_module),
            images, batch_size,
        )
        sample = Sample(images, labels, parts, stats)
        self._latest = (key, sample)
        return sample

"""``Insight``: the one Lightning callback of the views, and what each view costs.

``conf/insight/*.yaml`` builds it: ``_target_: layerscope.insight.Insight``, then one entry per view
(``insight.NAME``; ``insight.NAME=null`` drops one). It owns everything the views share, as state
of this one object for one run: the rank-zero check and the TensorBoard writer, each view's
schedule, the validation sample and its recording, the layer anatomy, the results measured so far,
and a timer per view. The views are plain classes (``base.View``) that draw from a ``Context``.

At every moment the views are called in the configured order, except that those reading other
views' results (the layer story) come after the rest.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.tensorboard import SummaryWriter

from layerscope.errors import UserError
from layerscope.insight.base import Anatomy, Context, Results, View, tensorboard_writer
from layerscope.insight.render import Margins
from layerscope.insight.sample import Samples

log = logging.getLogger(__name__)

# When a view's time is spent: once before the first step, while training (after each epoch's
# validation, every n steps), or once after the last step. The first and last are paid once per
# run; what is paid while training grows with the epochs. A view that draws only at the start and
# the end (``once_per_run``, the layer story) counts its last drawing as after training.
MOMENTS = ("before training", "while training", "after training")
SAMPLE = "validation sample"  # the time of recording the shared sample, charged to no one view
_HOOKS = ("start", "draw", "before_optimizer_step", "after_train_batch", "after_train_epoch",
          "validation_start", "validation_batch", "end")


class ViewTimer:
    """Seconds per view and per moment (:data:`MOMENTS`), timed around each call ``Insight`` makes."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock  # monotonic seconds; another clock lets the accounting be checked without waiting
        self._views: dict[str, float] = defaultdict(float)
        self._moments: dict[str, float] = defaultdict(float)

    @contextmanager
    def timed(self, view: str, moment: str) -> Iterator[None]:
        started = self.clock()
        try:
            yield
        finally:
            seconds = self.clock() - started
            self._views[view] += seconds
            self._moments[moment] += seconds

    def by_view(self) -> dict[str, float]:
        """Seconds each view took, the costliest first."""
        ranked = sorted(self._views.items(), key=lambda item: -item[1])
        return {view: round(seconds, 2) for view, seconds in ranked}

    def by_moment(self) -> dict[str, float]:
        """Seconds before, while and after training (their sum is that of :meth:`by_view`)."""
        return {moment: round(self._moments.get(moment, 0.0), 2) for moment in MOMENTS}


def _checked(views: dict[str, Any]) -> dict[str, View]:
    """The configured views, each a ``View``; anything else is a one-line error naming the entry."""
    chosen = {}
    for name, view in views.items():
        if view is None:  # insight.NAME=null: that view is off
            continue
        if not isinstance(view, View):
            what = "settings without a _target_" if isinstance(view, Mapping) else f"a {type(view).__name__}"
            views_named = ", ".join(n for n, v in views.items() if isinstance(v, View)) or "none"
            raise UserError(
                f"insight.{name} is {what}, not a view: a view is a layerscope.insight.View given by "
                f"_target_ (this config's views: {views_named}); Lightning callbacks go under callbacks"
            )
        chosen[name] = view
    return chosen


class Insight(L.Callback):
    """The views of one run, called at the moments each asks for (see the module docstring)."""

    def __init__(self, **views: View | None) -> None:
        self.views = _checked(views)
        # Views that read other views' results draw after the rest, at every moment.
        self._ordered = sorted(self.views.items(), key=lambda item: item[1].reads_results)
        self._hooked = {hook: [(name, view) for name, view in self._ordered
                               if getattr(type(view), hook) is not getattr(View, hook)]
                        for hook in _HOOKS}
        self.timer = ViewTimer()
        self._writer: SummaryWriter | None = None
        self._new_run()
        self._validation: tuple[Context, list[tuple[str, View]]] | None = None  # the pass under way

    # --- the run ---------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._new_run()
        self._writer = tensorboard_writer(trainer) if trainer.is_global_zero else None
        if self._writer is None and trainer.is_global_zero:
            log.warning("insight needs a TensorBoard logger (logger=tensorboard); its views log nothing")

    def _new_run(self) -> None:
        """What one fit shares, none of it carried over from an earlier fit with this callback."""
        self._results, self._samples, self._layers, self._margins = Results(), Samples(), Anatomy(), Margins()

    def _context(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> Context | None:
        if self._writer is None:  # another rank, or no TensorBoard: no insight work at all
            return None
        return Context(trainer, pl_module, self._writer, step, self._results, self._samples,
                       layers=self._layers, margins=self._margins)

    @staticmethod
    def _moment(view: View, hook: str) -> str:
        if hook == "start":
            return "before training"
        return "after training" if hook == "end" or view.once_per_run else "while training"

    def _call(
        self, hook: str, context: Context, *args: Any, among: list[tuple[str, View]] | None = None
    ) -> None:
        """``hook`` of every view that implements it (of those ``among``, where given), timed."""
        for name, view in self._hooked[hook]:
            if among is None or (name, view) in among:
                with self.timer.timed(name, self._moment(view, hook)):
                    getattr(view, hook)(context, *args)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        context = self._context(trainer, pl_module, step=0)
        if context is None:
            return
        first = trainer.global_step == 0  # a resumed run has drawn its step 0 already
        context.sample_size = max(
            (view.sample_size for view in self.views.values() if view.before_training), default=0
        )
        for name, view in self._ordered:
            with self.timer.timed(name, "before training"):
                if (name, view) in self._hooked["start"]:
                    view.start(context)
                if first and view.before_training:
                    view.draw(context)

    # --- every step ------------------------------------------------------------------------------
    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._hooked["before_optimizer_step"] and (context := self._context(
                trainer, pl_module, trainer.global_step)) is not None:
            self._call("before_optimizer_step", context)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._hooked["after_train_batch"] and (context := self._context(
                trainer, pl_module, trainer.global_step)) is not None:
            self._call("after_train_batch", context)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        context = self._context(trainer, pl_module, trainer.current_epoch + 1)
        if context is not None:
            self._call("after_train_epoch", context)

    # --- each validation pass --------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation = None
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        epochs_done = trainer.current_epoch + 1
        context = self._context(trainer, pl_module, epochs_done)
        if context is None:
            return
        last = trainer.max_epochs is not None and 0 < trainer.max_epochs <= epochs_done
        due = [(name, view) for name, view in self._ordered if view.due(epochs_done, last)]
        if not due:
            return
        context.sample_size = max(view.sample_size for _, view in due)
        if context.sample_size:
            with self.timer.timed(SAMPLE, "while training"):
                self._samples.record(trainer, pl_module, context.sample_size)
        self._validation = (context, due)
        self._call("validation_start", context, among=due)

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._validation is not None and self._samples.recording:
            with self.timer.timed(SAMPLE, "while training"):
                self._samples.before_batch(batch, batch_idx)

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._validation is None:
            return
        self._samples.after_batch()
        context, due = self._validation
        self._call("validation_batch", context, outputs, batch, among=due)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._validation is None:
            return
        (context, due), self._validation = self._validation, None
        if self._samples.recording:
            with self.timer.timed(SAMPLE, "while training"):
                self._samples.finish(trainer, pl_module)
        for name, view in due:
            with self.timer.timed(name, self._moment(view, "draw")):
                view.draw(context)

    # --- the end ---------------------------------------------------------------------------------
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        context = self._context(trainer, pl_module, trainer.current_epoch)
        if context is not None:
            self._call("end", context)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._samples.stop()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._validation = None
        self._samples.stop()

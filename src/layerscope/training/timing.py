"""Where a run's wall time goes: training steps, batches, validation, insight, checkpoints, test.

Lightning wraps every hook, loop step and callback call in ``trainer.profiler.profile(name)``.
:class:`PhaseTimer` is that profiler (and a callback, to know which loop is running): it keeps a
stack of the open actions and charges each stretch of time to the innermost one, so that no
second is counted twice, then sums the actions into the phases a user thinks in. The cost is two
``perf_counter`` calls per hook call, a few microseconds per training step.

The times are host times: the timer adds no synchronisation. On a GPU a step's kernels run after
the host has queued them, and their time lands on whatever waits for them next: the non-finite
loss check, which reads the loss every step and is charged to the training steps for that reason
(``timing_phase``), or else the progress bar or the epoch's end. Read the GPU breakdown's phases
as where the host waited, and the training speed (timed with synchronisation) as the speed.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Checkpoint, ProgressBar
from lightning.pytorch.profilers import Profiler

from layerscope.training import checkpointing

# The phases, in the order a run goes through them.
PHASES = (
    "start-up",        # process start to the first line of train(): imports, Hydra, config
    "data set-up",     # reading the data set into memory, splitting, normalisation statistics
    "building",        # model, callbacks, loggers, trainer
    "batches",         # drawing the next training batch and augmenting it
    "training steps",  # forward, loss, backward, optimizer step, logging
    "validation",      # the validation passes (and the sanity check before training)
    "insight",         # the layer views drawn for TensorBoard
    "checkpoints",     # saving best.ckpt and last.ckpt
    "progress bar",    # drawing the terminal progress bar
    "test",            # testing the best checkpoint
    "other",           # everything else: Lightning's set-up and tear-down, other callbacks, the summary
)
# Loop actions that fetch or prepare a training batch rather than learn from it.
_BATCH_ACTIONS = ("train_dataloader_next", "on_after_batch_transfer", "batch_to_device",
                  "on_before_batch_transfer", "transfer_batch_to_device")


def process_start_time() -> float | None:
    """When this process started, in ``time.time()`` seconds (Linux only; None elsewhere)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    except (OSError, StopIteration):
        return None
    # Field 22 is the start time in clock ticks after boot; the command name (field 2) may hold spaces.
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")


def _callback_phase(callback: L.Callback) -> str:
    declared = getattr(callback, "timing_phase", None)  # a callback that says where its time belongs
    if declared in PHASES:
        return declared
    module = type(callback).__module__
    if module.startswith("layerscope.insight"):
        return "insight"
    if isinstance(callback, Checkpoint) or module == checkpointing.__name__:
        return "checkpoints"
    if isinstance(callback, ProgressBar):
        return "progress bar"
    return "other"


class PhaseTimer(L.Callback):
    """Seconds per phase of a run (see :data:`PHASES`); pass :attr:`profiler` to the Trainer.

    As a callback it learns which loop is running and which callback is which; its profiler
    receives Lightning's actions. ``train()`` times the phases outside Lightning's loops with
    :meth:`phase` and writes :meth:`seconds` to metrics.json. What each insight view took is timed
    by the views' own callback (``layerscope.insight.Insight``), not here.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock  # monotonic seconds; another clock lets the accounting be checked without waiting
        self.profiler = _ActionClock(self)
        self._totals: dict[str, float] = defaultdict(float)
        self._stack: list[str] = []
        self._since = self.clock()
        self._loop = "fit"  # fit | validation | test: whose time it is
        self._callback_phases: dict[str, str] = {}

    # Lightning's actions, through the profiler ---------------------------------------------
    def _open(self, action: str) -> None:
        self._charge()
        self._stack.append(action)

    def _close(self, action: str) -> None:
        self._charge()
        # Actions close in the order they opened; search from the top in case one never closed.
        for index in range(len(self._stack) - 1, -1, -1):
            if self._stack[index] == action:
                del self._stack[index]
                break

    def _charge(self) -> None:
        now = self.clock()
        if self._stack:  # time outside every action is charged by phase() or ends up in "other"
            self._totals[self._phase(self._stack[-1])] += now - self._since
        self._since = now

    def _phase(self, action: str) -> str:
        if action.startswith("[Callback]"):
            phase = self._callback_phases.get(action[len("[Callback]"):].rsplit(".", 1)[0], "other")
            if phase != "other" or self._loop == "fit":
                return phase
        if self._loop != "fit":
            return self._loop
        if action == "save_checkpoint":
            return "checkpoints"
        if action.endswith(_BATCH_ACTIONS):
            return "batches"
        return "training steps"

    # Callback hooks: which loop runs, and what each callback is for -------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._callback_phases = {c.state_key: _callback_phase(c) for c in trainer.callbacks}

    # The sanity check before training runs the validation loop, so these hooks cover it too.
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loop = "validation"

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loop = "test"

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loop = "fit"

    on_test_end = on_validation_end

    # train()'s own phases, and the result --------------------------------------------------
    def add(self, phase: str, seconds: float) -> None:
        """Charge ``seconds`` measured outside Lightning's loops to ``phase``."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}: one of {', '.join(PHASES)}")
        self._totals[phase] += seconds

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Charge the block's wall time to ``name``, less what Lightning's actions in it charged."""
        started, charged = self.clock(), sum(self._totals.values())
        try:
            yield
        finally:
            self._charge()
            inside = sum(self._totals.values()) - charged
            self.add(name, max(0.0, self.clock() - started - inside))

    def seconds(self, total: float) -> dict[str, float]:
        """Seconds per phase, every phase in order; "other" also gets what ``total`` leaves over."""
        counted = {phase: self._totals.get(phase, 0.0) for phase in PHASES}
        counted["other"] += max(0.0, total - sum(counted.values()))
        return {phase: round(seconds, 2) for phase, seconds in counted.items()}


class _ActionClock(Profiler):
    """The Profiler side of :class:`PhaseTimer`: hands each action's start and stop to it."""

    def __init__(self, timer: PhaseTimer) -> None:
        super().__init__()
        self.timer = timer

    def start(self, action_name: str) -> None:
        self.timer._open(action_name)

    def stop(self, action_name: str) -> None:
        self.timer._close(action_name)


def insight_cost(metrics: dict) -> dict[str, float]:
    """What a run's views cost against the rest of its fit, from its metrics.json.

    ``run_share``: all their time; ``epoch_share``: only what they spend while training (after each
    epoch, every n steps), the part that grows with the epochs; ``once_s``: what they spend once per
    run, before the first step (step 0's drawings) and after the last (the layer story, the projector).
    """
    views = metrics["seconds_by_phase"]["insight"]
    outside = metrics["fit_seconds"] - views
    during = metrics.get("insight_seconds_by_moment", {}).get("while training", views)
    return {"views_s": views, "outside_s": outside, "once_s": views - during,
            "run_share": views / outside, "epoch_share": during / outside}


def breakdown_line(seconds: dict[str, float]) -> str:
    """``training steps 412 s (86%), validation 20 s (4%), ...``: largest first, zeros left out."""
    total = sum(seconds.values())
    parts = sorted(((s, p) for p, s in seconds.items() if s >= 0.05), reverse=True)
    return ", ".join(f"{p} {s:.1f} s ({100 * s / total:.0f}%)" for s, p in parts) if total else ""

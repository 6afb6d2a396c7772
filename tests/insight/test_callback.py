"""Insight, the one callback of the views: which views it accepts, when and in which order it calls
them, and what it charges each view's time to."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import OmegaConf

from layerscope.apps.cli import user_error_message
from layerscope.apps.train import build_insight
from layerscope.errors import UserError
from layerscope.insight import Context, EpochView, Insight, View
from layerscope.insight.callback import MOMENTS, SAMPLE
from tests.insight.conftest import _train


class HandClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Spends(EpochView):
    """Advances the clock by ``seconds`` at each call and notes which call it was."""

    def __init__(self, clock: HandClock, calls: list[str], seconds: float, every_n_epochs: int = 1) -> None:
        super().__init__(every_n_epochs)
        self.clock, self.calls, self.seconds = clock, calls, seconds

    def _spend(self, what: str, context: Context) -> None:
        self.clock.now += self.seconds
        self.calls.append(f"{type(self).__name__}.{what}@{context.step}")

    def draw(self, context: Context) -> None:
        self._spend("draw", context)

    def end(self, context: Context) -> None:
        self._spend("end", context)


class ReadsResults(Spends):
    """Drawn after the others at every moment, wherever it is configured."""

    reads_results = True
    once_per_run = True

    def due(self, epochs_done: int, last: bool) -> bool:
        return last


class Publishes(Spends):
    def draw(self, context: Context) -> None:
        super().draw(context)
        context.results.add(SimpleNamespace(step=context.step))


def _trainer(tmp_path: Path, max_epochs: int = 2) -> SimpleNamespace:
    return SimpleNamespace(
        is_global_zero=True, loggers=[TensorBoardLogger(tmp_path, name="", version="")], global_step=0,
        current_epoch=0, max_epochs=max_epochs, sanity_checking=False,
        state=SimpleNamespace(fn=TrainerFn.FITTING),
    )


def _fit(insight: Insight, trainer: SimpleNamespace, epochs: int) -> None:
    """The hooks a fit of ``epochs`` epochs calls, in Lightning's order."""
    insight.setup(trainer, None, "fit")
    insight.on_train_start(trainer, None)
    for epoch in range(epochs):
        trainer.current_epoch, trainer.global_step = epoch, 10 * (epoch + 1)
        insight.on_validation_epoch_start(trainer, None)
        insight.on_validation_epoch_end(trainer, None)
        insight.on_train_epoch_end(trainer, None)
    trainer.current_epoch = epochs
    insight.on_train_end(trainer, None)


def test_views_that_read_results_come_last_and_each_view_is_timed_by_moment(tmp_path: Path) -> None:
    clock, calls = HandClock(), []
    insight = Insight(
        story=ReadsResults(clock, calls, 4.0), probes=Publishes(clock, calls, 1.0),
        maps=Spends(clock, calls, 0.5, every_n_epochs=2), off=None,
    )
    insight.timer.clock = clock
    assert list(insight.views) == ["story", "probes", "maps"]  # null entries are views switched off
    _fit(insight, _trainer(tmp_path), epochs=2)
    assert calls == [
        "Publishes.draw@0", "Spends.draw@0", "ReadsResults.draw@0",  # step 0: the story after the others
        "Publishes.draw@1",  # maps draws every second epoch
        "Publishes.draw@2", "Spends.draw@2", "ReadsResults.draw@2",
        "Publishes.end@2", "Spends.end@2", "ReadsResults.end@2",
    ]
    assert insight.timer.by_view() == {"story": 12.0, "probes": 4.0, "maps": 1.5}
    # Before training: every step-0 drawing; after: every end, and the once-per-run story's last drawing.
    assert insight.timer.by_moment() == {"before training": 5.5, "while training": 2.5, "after training": 9.5}
    assert list(insight.timer.by_moment()) == list(MOMENTS)
    assert SAMPLE not in insight.timer.by_view()  # no view of the shared sample: nothing recorded


def test_a_resumed_run_draws_no_second_step_zero_and_other_ranks_draw_nothing(tmp_path: Path) -> None:
    clock, calls = HandClock(), []
    insight = Insight(maps=Spends(clock, calls, 1.0))
    trainer = _trainer(tmp_path)
    insight.setup(trainer, None, "fit")
    trainer.global_step = 10  # resumed after the first epoch
    insight.on_train_start(trainer, None)
    assert calls == []
    trainer.is_global_zero = False
    calls.clear()
    _fit(insight, trainer, epochs=2)
    assert calls == []


def test_results_are_those_of_one_run(tmp_path: Path) -> None:
    clock, calls = HandClock(), []
    seen: list[object] = []

    class Reads(ReadsResults):
        def draw(self, context: Context) -> None:
            assert context.results.at(SimpleNamespace, context.step) is not None  # drawn after probes
            seen.append(context.results.first(SimpleNamespace))

    insight = Insight(probes=Publishes(clock, calls, 0.0), story=Reads(clock, calls, 0.0))
    for _ in range(2):  # two fits with the same callback: the second starts with no results
        _fit(insight, _trainer(tmp_path, max_epochs=1), epochs=1)
    assert len(seen) == 4 and seen[0] is seen[1] and seen[2] is seen[3]
    assert seen[2] is not seen[0]


def test_an_entry_that_is_not_a_view_is_one_clear_line(tmp_path: Path) -> None:
    not_a_view = r"^insight\.feture_maps is settings without a _target_, not a view"
    with pytest.raises(UserError, match=not_a_view):
        Insight(filters=View(), feture_maps=OmegaConf.create({"max_channels": 3}))
    with pytest.raises(UserError, match=r"insight\.saver is a ModelCheckpoint, not a view.*under callbacks"):
        Insight(saver=ModelCheckpoint(dirpath=tmp_path))


def test_the_insight_config_builds_one_callback_or_none() -> None:
    conf = Path(__file__).parents[2] / "conf" / "insight"
    default = OmegaConf.load(conf / "default.yaml")
    insight = build_insight(default)
    assert isinstance(insight, Insight) and "layer_story" in insight.views
    assert build_insight(OmegaConf.load(conf / "off.yaml")) is None  # no views: no callback at all
    assert build_insight(None) is None
    begin = r"begin the insight config with _target_: layerscope\.insight\.Insight"
    with pytest.raises(UserError, match=begin):
        build_insight(OmegaConf.create({"filters": {"_target_": "layerscope.insight.LayerFilters"}}))


def test_a_new_entry_without_a_view_stops_the_run_in_one_line(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(Exception) as caught:
        _train(tmp_path, data_dir, "+insight.feture_maps.max_channels=3")
    message = user_error_message(caught.value)
    assert message is not None
    assert message.startswith("insight.feture_maps is settings without a _target_, not a view")
    assert "feature_maps" in message and "\n" not in message
    assert not (tmp_path / "checkpoints").exists()


def test_a_view_setting_out_of_range_is_one_clear_line() -> None:
    conf = OmegaConf.load(Path(__file__).parents[2] / "conf" / "insight" / "default.yaml")
    conf.probes.every_n_epochs = 0
    with pytest.raises(Exception) as caught:
        build_insight(conf)
    assert user_error_message(caught.value) == "insight: LayerProbes's every_n_epochs=0 must be 1 or more"

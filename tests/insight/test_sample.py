"""The layer summaries recorded during validation equal those of a separate inspection pass."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import lightning as L
import torch

from layerscope.insight import sample
from layerscope.insight.capture import LayerStats, layer_stats
from layerscope.insight.inputs import insight_data, inspected_model
from layerscope.insight.sample import Sample, validation_sample
from tests.insight.conftest import _train


class CompareWithFreshPass(L.Callback):
    """Runs before the insight views (callbacks come first): checks that the validation pass was
    recorded, takes the recorded sample, and redoes it with a separate pass."""

    seen: ClassVar[list[tuple[Sample, list[LayerStats]]]] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        recorder = sample._recorders.get(trainer)
        assert recorder is not None and not recorder.failed and recorder.seen == 150
        recorded = validation_sample(trainer, pl_module, 150)
        data = insight_data(trainer)
        fresh, _ = layer_stats(lambda b: pl_module(data.preprocess(b)), inspected_model(pl_module),
                               recorded.images, batch_size=64)
        self.seen.append((recorded, fresh))


def test_recorded_sample_matches_a_fresh_pass(tmp_path: Path, data_dir: Path) -> None:
    _train(tmp_path, data_dir, "trainer.max_epochs=1", "data.eval_batch_size=64",
           "insight.top_patches.sample_size=150", "insight.probes.sample_size=150",
           "insight.layer_story.sample_size=150",
           "+callbacks.compare._target_=tests.insight.test_sample.CompareWithFreshPass")
    assert len(CompareWithFreshPass.seen) == 1
    recorded, fresh = CompareWithFreshPass.seen[0]
    assert len(recorded.labels) == 150  # 64 + 64 + the first 22 of the third batch
    for mine, theirs in zip(recorded.stats, fresh, strict=True):
        assert torch.allclose(mine.mean, theirs.mean, atol=1e-4)
        assert torch.allclose(mine.peak, theirs.peak, atol=1e-4)

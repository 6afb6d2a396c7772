"""The layer summaries recorded during validation equal those of a separate inspection pass."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from layerscope.insight import Context, EpochView
from layerscope.insight.capture import LayerStats, layer_stats
from layerscope.insight.sample import Sample
from tests.insight.conftest import _train


class CompareWithFreshPass(EpochView):
    """A view of the shared sample: keeps the sample a validation epoch's drawing got, and the same
    images' summaries from a separate pass."""

    seen: ClassVar[list[tuple[Sample, list[LayerStats]]]] = []

    def __init__(self) -> None:
        super().__init__()
        self.before_training, self.sample_size = False, 150

    def draw(self, context: Context) -> None:
        recorded = context.sample(self.sample_size)
        fresh, _ = layer_stats(lambda b: context.pl_module(context.data.preprocess(b)), context.model,
                               recorded.images, batch_size=64)
        self.seen.append((recorded, fresh))


def test_recorded_sample_matches_a_fresh_pass(tmp_path: Path, data_dir: Path) -> None:
    _train(tmp_path, data_dir, "trainer.max_epochs=1", "data.eval_batch_size=64",
           "insight.top_patches.sample_size=150", "insight.probes.sample_size=150",
           "insight.layer_story.sample_size=150",
           "+insight.compare._target_=tests.insight.test_sample.CompareWithFreshPass")
    assert len(CompareWithFreshPass.seen) == 1
    recorded, fresh = CompareWithFreshPass.seen[0]
    assert recorded.recorded  # from the validation pass, not from a pass of its own
    assert len(recorded.labels) == 150  # 64 + 64 + the first 22 of the third batch
    for mine, theirs in zip(recorded.stats, fresh, strict=True):
        assert torch.allclose(mine.mean, theirs.mean, atol=1e-4)
        assert torch.allclose(mine.peak, theirs.peak, atol=1e-4)

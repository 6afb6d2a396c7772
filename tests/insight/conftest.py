"""One tiny training run with insight on and one with it off, shared by the insight tests."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import MagicMock

import pytest

from layerscope.apps.train import train_with
from tests.conftest import CONF, TINY_SHAPES

EPOCHS = 2
# The steps the probes, the dissection, the feature maps and the top patches log at by default:
# before training, then every second epoch (and the last).
EVERY_SECOND_EPOCH = [0, *range(2, EPOCHS + 1, 2)]
DEPTH = 8  # ResNet-8: 8 named layers
LAYERS = ["01_stem", "02_stage1.block1.conv1", "03_stage1.block1.conv2", "04_stage2.block1.conv1",
          "05_stage2.block1.conv2", "06_stage3.block1.conv1", "07_stage3.block1.conv2", "08_fc"]
# fp32 on every machine (trainer.precision=auto would pick bf16 on some): the expected values hold
# alike everywhere; the bf16 runs are tests of their own (tests/training/test_precision.py).
SMALL_RUN = [*TINY_SHAPES, f"model.depth={DEPTH}", f"trainer.max_epochs={EPOCHS}", "data.batch_size=100",
             "trainer.num_sanity_val_steps=0", "trainer.precision=32-true",
             # progressive resizing, as the default run trains, so that insight=default vs off covers it
             "module.train_image_sizes=[16,32]"]
SMALL_INSIGHT = ["insight.weights.every_n_steps=4", "insight.top_patches.sample_size=150",
                 "insight.probes.sample_size=150", "insight.layer_story.sample_size=150",
                 "insight.layer_story.feature_vis_steps=4",
                 # insight=full's feature visualisation too, so that the comparison with insight=off covers it
                 "+insight.feature_vis={_target_:layerscope.insight.FeatureVisualisation,steps:4,sample_size:150}",
                 # and its concept discovery, small
                 "+insight.concept_discovery={_target_:layerscope.insight.ConceptDiscovery,images:60,"
                 "clusters:5,examples:10,min_images:3,random_sets:3}"]


def _train(run_dir: Path, data_dir: Path, *overrides: str) -> dict:
    return train_with([*SMALL_RUN, *overrides], output_dir=run_dir, data_dir=data_dir, config_dir=CONF)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """The same run twice, insight=default and insight=off."""
    folders = {}
    for choice in ("default", "off"):
        folders[choice] = tmp_path_factory.mktemp(f"insight-{choice}")
        extra = SMALL_INSIGHT if choice == "default" else []
        _train(folders[choice], data_dir, f"insight={choice}", *extra)
    return folders




def logged_pictures(writer: MagicMock) -> list[str]:
    """The IMAGES tags a mocked writer was given (by ``render.log_image``), in order."""
    calls = writer.file_writer.add_summary.call_args_list
    return [value.tag for call in calls for value in call.args[0].value]

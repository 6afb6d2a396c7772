"""Shared fixtures: a tiny shapes cache and a composer for the training config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from layerscope.apps.cli import register_resolvers

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "src" / "layerscope" / "conf"
# Small shapes splits for tests: the generator's prefix property makes them a subset of the real set.
TINY_SHAPES = ["data.source.num_train=1200", "data.source.num_test=300", "data.val_size=200"]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data cache for the whole session (shapes renders once, then loads from disk)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def compose_train(data_dir: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose conf/train.yaml with overrides, its paths pointed into tmp folders."""

    def _compose(*overrides: str) -> DictConfig:
        register_resolvers()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(
                "train",
                overrides=[f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path}", *overrides],
            )

    return _compose


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A run folder with a checkpoint: ResNet-8 trained for one short epoch on tiny shapes."""
    from layerscope.apps.train import train

    run_dir = tmp_path_factory.mktemp("tiny-run")
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.data_dir={data_dir}", f"paths.output_dir={run_dir}", *TINY_SHAPES, "model.depth=8",
            "trainer.max_epochs=1", "insight=off", "data.batch_size=100",
        ])
    train(cfg)
    (run_dir / ".hydra").mkdir(exist_ok=True)  # as `python train.py` leaves it: eval.py reads it
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return run_dir

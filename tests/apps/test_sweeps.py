"""Sweeps: `-m` grids, the Optuna search, the why_deep recipe and the SLURM launcher config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins
from hydra.types import RunMode

from layerscope.apps.cli import register_resolvers
from tests.apps.test_train_cli import run_train
from tests.conftest import CONF, TINY_SHAPES

QUICK = ["debug=fast", *TINY_SHAPES, "insight=off", "trainer.enable_progress_bar=false"]


def _jobs(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep, in job order: 0_deep_shapes, 1_plain_shapes, ..."""
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.split("_")[0].isdigit()]
    return sorted(jobs, key=lambda p: int(p.name.split("_")[0]))


def test_a_grid_sweep_runs_every_combination_in_its_own_folder(tmp_path: Path, data_dir: Path) -> None:
    sweep_dir = tmp_path / "multirun"
    result = run_train(*QUICK, "model=shallow,mlp", "seed=1,2", f"hydra.sweep.dir={sweep_dir}", "-m",
                       data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _jobs(sweep_dir)
    # Each job's folder is named by its number, its model and its data.
    assert [p.name for p in jobs] == ["0_shallow_shapes", "1_shallow_shapes", "2_mlp_shapes", "3_mlp_shapes"]
    combinations = set()
    for job in jobs:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        combinations.add(tuple(o for o in overrides if o.startswith(("model=", "seed="))))
        metrics = json.loads((job / "metrics.json").read_text())
        assert 0.0 <= metrics["test/acc"] <= 1.0
        assert (job / "checkpoints" / "last.ckpt").is_file() and (job / "tensorboard").is_dir()
    assert combinations == {(f"model={m}", f"seed={s}") for m in ("shallow", "mlp") for s in (1, 2)}


def test_optuna_search_maximises_val_accuracy_without_touching_the_test_split(
    tmp_path: Path, data_dir: Path
) -> None:
    sweep_dir = tmp_path / "search"
    result = run_train("hparams_search=optuna", "hydra.sweeper.n_trials=3", *QUICK, "model=shallow",
                       f"hydra.sweep.dir={sweep_dir}", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = [json.loads((job / "metrics.json").read_text()) for job in _jobs(sweep_dir)]
    assert len(trials) == 3
    assert all("test/acc" not in t for t in trials)  # test: false in the search
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"optimizer.lr", "optimizer.weight_decay", "data.batch_size"}
    assert best["best_value"] == pytest.approx(max(t["val/acc"] for t in trials))
    assert 0.01 <= best["best_params"]["optimizer.lr"] <= 1.0
    assert best["best_params"]["data.batch_size"] in (64, 128, 256)


def _compose_with_hydra(*overrides: str) -> dict:
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_why_deep_is_a_sweep_of_plain_and_residual_at_depths_20_and_56() -> None:
    cfg = _compose_with_hydra("experiment=why_deep")
    assert cfg.hydra.mode == RunMode.MULTIRUN
    assert dict(cfg.hydra.sweeper.params) == {"model": "plain,deep", "model.depth": "20,56"}
    assert cfg.data.name == "fashion_mnist"


def test_slurm_launcher_config_goes_through_submitit() -> None:
    launcher = _compose_with_hydra("hydra/launcher=slurm", "hydra.launcher.partition=gpu").hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.timeout_min, launcher.signal_delay_s) == ("gpu", 240, 120)


def test_a_sweep_through_submitit_runs_each_job_in_a_process_of_its_own(
    tmp_path: Path, data_dir: Path
) -> None:
    """The SLURM path without SLURM: the same plugin, with submitit's local executor."""
    sweep_dir = tmp_path / "submitit"
    result = run_train(*QUICK, "model=shallow,mlp", "hydra/launcher=submitit_local",
                       f"hydra.sweep.dir={sweep_dir}", "-m", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in _jobs(sweep_dir)] == ["0_shallow_shapes", "1_mlp_shapes"]
    for job in _jobs(sweep_dir):
        assert json.loads((job / "metrics.json").read_text())["epochs"] == 1
    assert list((sweep_dir / ".submitit").iterdir())  # submitit's job records


def test_slurm_tasks_and_gpus_follow_the_trainer_devices() -> None:
    """Lightning's SLURM check wants one task per device: the launcher asks for what the trainer uses."""
    cfg = _compose_with_hydra("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4",
                              "trainer.num_nodes=2")
    launcher = Plugins.instance()._instantiate(cfg.hydra.launcher)  # as Hydra builds it for a sweep
    sbatch = {key: launcher.params[key] for key in ("tasks_per_node", "gpus_per_node", "nodes")}
    assert sbatch == {"tasks_per_node": 4, "gpus_per_node": 4, "nodes": 2}
    single = _compose_with_hydra("hydra/launcher=slurm").hydra.launcher
    assert (single.tasks_per_node, single.gpus_per_node, single.nodes) == (1, 1, 1)

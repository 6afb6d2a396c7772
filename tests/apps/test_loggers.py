"""logger=csv and logger=mlflow beside TensorBoard: the curves, settings and test results, read back."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig

from layerscope.apps.train import train
from tests.conftest import REPO, TINY_SHAPES

EPOCHS = 2
# A tiny run with one layer view: enough to see that the views still find the TensorBoard logger.
TINY_RUN = ["debug=fast", *TINY_SHAPES, "model.depth=8", f"trainer.max_epochs={EPOCHS}", "insight=off",
            "+insight.feature_maps={_target_:layerscope.insight.FeatureMaps}",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def run_train(*argv: str, cwd: Path, block_mlflow: bool = False) -> subprocess.CompletedProcess[str]:
    """``python train.py ARGV`` in ``cwd``; ``block_mlflow``: as if MLflow were not installed."""
    # sys.modules[name] = None makes every import of the name fail, as for a package that is not there.
    block = "sys.modules['mlflow'] = None; " if block_mlflow else ""
    program = f"import runpy, sys; {block}del sys.argv[0]; runpy.run_path(sys.argv[0], run_name='__main__')"
    return subprocess.run([sys.executable, "-c", program, str(REPO / "train.py"), *argv],
                          capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def tensorboard_tags(run_dir: Path) -> dict[str, list[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return events.Tags()


def test_csv_beside_tensorboard_in_a_run_folder_named_by_what_ran(tmp_path: Path, data_dir: Path) -> None:
    # No hydra.run.dir: the run goes to outputs/<date>/<time>_<model>_<data> under the working directory.
    result = run_train(*TINY_RUN, "logger=csv", f"paths.data_dir={data_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = (tmp_path / "outputs").glob("*/*")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", run_dir.parent.name), run_dir
    assert re.fullmatch(r"\d{2}-\d{2}-\d{2}_deep_shapes", run_dir.name), run_dir
    assert f"Run folder:      {run_dir}" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())

    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted(int(r["epoch"]) for r in rows if r["val/acc"]) == list(range(EPOCHS))
    assert any(r["train/lr"] for r in rows) and any(r["train/loss_step"] for r in rows)
    assert any(r.get("train/img_per_s") for r in rows)  # the speed reaches every logger
    [test_row] = [r for r in rows if r["test/acc"]]
    assert float(test_row["test/acc"]) == pytest.approx(metrics["test/acc"])
    assert float(test_row["test/loss"]) == pytest.approx(metrics["test/loss"])
    hparams = yaml.safe_load((run_dir / "csv" / "hparams.yaml").read_text())
    assert hparams["model._target_"] == metrics["model"] and hparams["model.depth"] == 8
    assert hparams["optimizer.lr"] == 0.2 and hparams["data.name"] == "shapes"

    tags = tensorboard_tags(run_dir)  # TensorBoard still gets the curves, and the view its pictures
    assert {"val/acc", "test/acc", "train/lr"} <= set(tags["scalars"])
    assert len([t for t in tags["images"] if t.startswith("feature_maps/")]) == 8


def test_mlflow_beside_tensorboard(compose_train: Callable[..., DictConfig], tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow", reason="logger=mlflow needs the mlflow extra")
    metrics = train(compose_train(*TINY_RUN, "logger=mlflow"))

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("layerscope")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == tmp_path.name and run.info.status == "FINISHED"
    val_acc = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(val_acc) == EPOCHS  # one value per epoch
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert run.data.metrics["test/loss"] == pytest.approx(metrics["test/loss"])
    assert "train/lr" in run.data.metrics and "train/loss_step" in run.data.metrics
    assert run.data.metrics["train/img_per_s"] > 0
    params = run.data.params  # MLflow keeps parameters as text
    assert params["model._target_"] == metrics["model"] and params["model.depth"] == "8"
    assert params["optimizer.lr"] == "0.2" and params["trainer.max_epochs"] == str(EPOCHS)

    tags = tensorboard_tags(tmp_path)
    assert {"val/acc", "test/acc"} <= set(tags["scalars"])
    assert len([t for t in tags["images"] if t.startswith("feature_maps/")]) == 8


def test_mlflow_not_installed_ends_in_one_line_before_training(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_train("logger=mlflow", *TINY_SHAPES, f"paths.data_dir={tmp_path / 'data'}",
                       f"hydra.run.dir={run_dir}", cwd=tmp_path, block_mlflow=True)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == "error: logger=mlflow needs MLflow: pip install -e '.[mlflow]'", result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not run_dir.exists() and not (tmp_path / "data").exists()  # stopped before reading any data

"""A real 2-process DistributedDataParallel run on CPU (gloo): one run folder, rank zero writes."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.apps.test_resume import _assert_same_run, _metrics
from tests.apps.test_train_cli import run_train
from tests.conftest import TINY_SHAPES


def test_two_process_cpu_ddp_writes_one_run(tmp_path: Path, data_dir: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_train(
        "debug=fast", *TINY_SHAPES, "model.depth=8", "trainer=ddp", "trainer.accelerator=cpu",
        "trainer.devices=2", f"hydra.run.dir={run_dir}", data_dir=data_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["epochs"] == 1
    assert metrics["train/images"] == 512  # debug=fast's training set, both processes' halves together
    calibration = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)["layerscope_ood"]
    assert calibration["images"] == 200  # both processes' validation images, gathered
    events = sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert len({e.name.split(".")[-2] for e in events}) == 1  # one writing process (rank zero)
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    accumulator.Reload()
    feature_maps = [t for t in accumulator.Tags()["images"] if t.startswith("feature_maps/")]
    assert len(feature_maps) == 8  # insight ran, on rank zero only
    assert [e.step for e in accumulator.Images(feature_maps[0])] == [0, 1]
    assert result.stdout.count("Run folder:") == 1  # one summary, from rank zero


def test_ddp_run_preempted_on_rank_zero_saves_once_and_resumes(tmp_path: Path, data_dir: Path) -> None:
    """SIGTERM reaches rank zero only; both ranks stop at the same step, and resume=auto finishes."""
    run_dir = tmp_path / "run"
    # 4 steps per epoch on each of the 2 ranks; the signal comes mid-way through the first epoch.
    ddp = ["debug=fast", *TINY_SHAPES, "model.depth=8", "insight=off", "trainer=ddp",
           "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=2", f"hydra.run.dir={run_dir}"]
    fault = ["+callbacks.fault._target_=tests.apps.faults.SignalAtStep", "+callbacks.fault.step=2",
             "+callbacks.fault.signal=SIGTERM", "+callbacks.fault.rank=0"]
    stopped = run_train(*ddp, *fault, data_dir=data_dir)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert stopped.stderr.count("stopped by SIGTERM at step 3 (epoch 0)") == 1  # one rank speaks
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3

    resumed = run_train(*ddp, "resume=auto", data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test/acc"] <= 1.0


DDP_SWEEP = ["debug=fast", *TINY_SHAPES, "model.depth=8", "insight=off", "trainer=ddp",
             "trainer.accelerator=cpu", "trainer.devices=2", "trainer.enable_progress_bar=false"]


def _assert_each_job_ran_once_on_two_processes(sweep_dir: Path, stdout: str) -> None:
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0_deep_shapes", "1_deep_shapes"]
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["epochs"] == 1
        # Hydra's log of each process of the job: rank zero's, and the one rank Lightning started.
        assert sorted(p.name for p in job.glob("*.log")) == ["train.log", "train_ddp_process_1.log"]
    assert stdout.count("Run folder:") == 2  # one summary per job, from its rank zero


def test_a_ddp_sweep_launches_once_and_runs_each_job_in_its_folder(tmp_path: Path, data_dir: Path) -> None:
    sweep_dir = tmp_path / "multirun"
    result = run_train(*DDP_SWEEP, "seed=1,2", f"hydra.sweep.dir={sweep_dir}", "-m", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Launching 2 jobs locally") == 1, result.stdout[-3000:]
    _assert_each_job_ran_once_on_two_processes(sweep_dir, result.stdout)


def test_an_optuna_search_with_ddp_runs_each_trial_once(tmp_path: Path, data_dir: Path) -> None:
    sweep_dir = tmp_path / "search"
    result = run_train("hparams_search=optuna", "hydra.sweeper.n_trials=2", *DDP_SWEEP,
                       f"hydra.sweep.dir={sweep_dir}", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Study name: layerscope") == 1, result.stdout[-3000:]
    _assert_each_job_ran_once_on_two_processes(sweep_dir, result.stdout)
    assert (sweep_dir / "optimization_results.yaml").is_file()


def test_a_resumed_ddp_run_equals_the_run_made_without_a_stop(tmp_path: Path, data_dir: Path) -> None:
    """Each rank gets its own random streams back on resume, not rank zero's (made to differ here,
    as on GPUs). 511 images: unequal halves are evened out (255 each, 3 steps per epoch), where one
    rank with a step more would wait in its all-reduce for ever."""
    run_dir, reference = tmp_path / "run", tmp_path / "uninterrupted"
    ddp = ["debug=fast", *TINY_SHAPES, "data.train_size=511", "model.depth=8", "insight=off", "trainer=ddp",
           "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=2",
           "trainer.enable_progress_bar=false", "+callbacks.diverge._target_=tests.apps.faults.DivergeRanks"]
    fault = ["+callbacks.fault._target_=tests.apps.faults.SignalAtStep", "+callbacks.fault.step=4",
             "+callbacks.fault.signal=SIGTERM", "+callbacks.fault.rank=0"]
    stopped = run_train(*ddp, f"hydra.run.dir={run_dir}", *fault, data_dir=data_dir)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 1 and len(saved["random_state_by_rank"]) == 2  # mid-way through epoch 2
    resumed = run_train(*ddp, f"hydra.run.dir={run_dir}", "resume=auto", data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = run_train(*ddp, f"hydra.run.dir={reference}", data_dir=data_dir)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert _metrics(reference)["steps"] == 6 and _metrics(reference)["train/images"] == 2 * 2 * 3 * 64
    _assert_same_run(run_dir, reference)

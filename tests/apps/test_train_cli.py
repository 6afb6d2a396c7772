"""`python train.py` end to end: the run-folder contract, the checkpoint contract, bad overrides."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from layerscope.apps.cli import model_name, register_resolvers
from layerscope.apps.train import _print_summary, train
from layerscope.models import build_model
from layerscope.training.timing import PHASES
from tests.conftest import CONF, REPO, TINY_SHAPES


def run_train(*overrides: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), f"paths.data_dir={data_dir}", *overrides],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data_dir = tmp_path_factory.mktemp("data")
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    result = run_train(
        "debug=fast", *TINY_SHAPES, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}",
        data_dir=data_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result.stdout


def test_run_folder_contract(finished_run: tuple[Path, str]) -> None:
    run_dir, stdout = finished_run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/acc", "test/loss", "val/acc", "epochs", "train/img_per_s"):
        assert metrics[key] is not None, key
    assert metrics["epochs"] == 2
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["train/img_per_s"] > 0
    assert f"Run folder:      {run_dir}" in stdout
    assert "checkpoints/best.ckpt" in stdout and "tensorboard --logdir" in stdout


def test_the_run_says_where_its_time_went(finished_run: tuple[Path, str]) -> None:
    run_dir, stdout = finished_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    phases = metrics["seconds_by_phase"]
    assert set(phases) == set(PHASES)
    # Every phase this run went through took time; together they are the run's whole time.
    for phase in ("start-up", "training steps", "validation", "insight", "checkpoints", "test"):
        assert phases[phase] > 0, (phase, phases)
    assert sum(phases.values()) == pytest.approx(metrics["total_seconds"], abs=0.1)
    assert phases["training steps"] <= metrics["fit_seconds"]
    assert "Time:            " in stdout and "training steps" in stdout


def test_checkpoint_alone_rebuilds_model_and_preprocessing(finished_run: tuple[Path, str]) -> None:
    run_dir, _ = finished_run
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    info = hparams["data_info"]
    assert info["classes"][:2] == ["face", "house"] and info["image_size"] == 32
    assert info["in_channels"] == 3 and len(info["mean"]) == len(info["std"]) == 3
    model = build_model(hparams["model_config"])
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()
               if k.startswith("model.")}
    model.load_state_dict(weights)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_tensorboard_has_the_training_curves(finished_run: tuple[Path, str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = finished_run
    tags: set[str] = set()
    for events in (run_dir / "tensorboard").glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert {"train/loss_step", "train/lr", "val/acc", "val/loss", "test/acc"} <= tags


def test_train_in_process_learns_on_shapes(compose_train: Callable[..., DictConfig]) -> None:
    # A few epochs of a small CNN on 1,000 images must beat chance (10%) by far: the pipeline learns.
    cfg = compose_train(
        "model=shallow", "optimizer=adamw", *TINY_SHAPES, "trainer.max_epochs=8", "data.batch_size=50",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
    )
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.3, metrics
    assert metrics["epochs"] == 8


def test_model_fast_trains_with_every_layer_view(compose_train: Callable[..., DictConfig],
                                                 tmp_path: Path) -> None:
    # The insight views know the fast network's layers only through named_layers(): every one of
    # its 10 layers gets its feature maps and its top patches, the classifier's covering the image.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = compose_train("debug=fast", "model=fast", "model.widths=[8,16,16,32]", *TINY_SHAPES,
                        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false")
    metrics = train(cfg)
    assert metrics["model"] == "layerscope.models.FastResNet" and metrics["test/acc"] is not None
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    images = events.Tags()["images"]
    assert len([t for t in images if t.startswith("feature_maps/")]) == 10
    patches = sorted(t for t in images if t.startswith("top_patches/"))
    assert len(patches) == 10 and patches[-1] == "top_patches/10_fc"
    classifier = events.Images("top_patches/10_fc")[-1]
    assert (classifier.height, classifier.width) == (2 + 4 * (96 + 2), 2 + 9 * (96 + 2))  # 32 px x 3


@pytest.mark.parametrize(("precision", "weights_dtype"),
                         [("bf16-mixed", torch.float32), ("bf16-true", torch.bfloat16)])
def test_bf16_precisions_train_on_the_cpu_with_the_layer_views(
    compose_train: Callable[..., DictConfig], tmp_path: Path, precision: str, weights_dtype: torch.dtype
) -> None:
    # bf16-mixed is the fast choice on CPUs with bf16 units: the views must cope with bf16
    # activations, and the checkpoint keeps fp32 weights. bf16-true keeps bf16 weights, so the
    # batches (made float by preprocessing, after Lightning's conversion) and the views' own
    # inputs must reach the model in bf16 too.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = compose_train("debug=fast", f"trainer.precision={precision}", *TINY_SHAPES,
                        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false")
    metrics = train(cfg)
    assert metrics["test/acc"] is not None and metrics["train/img_per_s"] > 0
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert len([t for t in events.Tags()["images"] if t.startswith("feature_maps/")]) == 20
    weights = torch.load(metrics["best_checkpoint"], weights_only=False)["state_dict"]
    assert {w.dtype for w in weights.values() if w.is_floating_point()} == {weights_dtype}
    assert "layer_story" in events.Tags()["images"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model=dep"], "model=dep is not an option: choose one of deep, fast, mlp, plain, shallow"),
        (["data.batch_size=0"], "data.batch_size=0 must be an integer >= 1"),
        (["model.depth=21"], "model.depth=21 is not a valid depth"),
        (["data=imagefolder"], "data.root"),
        (["data=imagefolder", "data.root=/nonexistent/photos"], "data.root=/nonexistent/photos"),
    ],
)
def test_bad_overrides_end_in_one_clear_line(
    overrides: list[str], expected: str, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    shapes = [] if "data=imagefolder" in overrides else TINY_SHAPES
    result = run_train(*overrides, *shapes, f"hydra.run.dir={run_dir}", data_dir=tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and expected in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not run_dir.exists()  # no half-written run folder left behind


def test_train_on_an_image_folder(compose_train: Callable[..., DictConfig], tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "photos"
    for label, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (root / label).mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (20 + i, 24), colour).save(root / label / f"{i}.png")
    (root / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cfg = compose_train(
        "data=imagefolder", f"data.root={root}", "data.image_size=16", "data.val_size=4",
        "data.test_size=4", "data.batch_size=8", "model=mlp", "model.hidden=[16]",
        "trainer.max_epochs=6", "trainer.enable_progress_bar=false", "optimizer=adamw",
    )
    metrics = train(cfg)
    assert metrics["test/acc"] == 1.0  # two flat colours: trivially separable
    checkpoint = torch.load(metrics["best_checkpoint"], weights_only=True)
    assert checkpoint["hyper_parameters"]["data_info"]["classes"] == ["blue", "red"]


def test_a_diverging_run_stops_at_the_first_nan_and_names_the_cause(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_train("debug=fast", *TINY_SHAPES, "model.depth=8", "scheduler=none", "optimizer.lr=1e8",
                       f"hydra.run.dir={run_dir}", data_dir=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert "the loss became nan at step" in errors[0] or "the loss became inf at step" in errors[0]
    assert "learning rate (1e+08 then) is too high: lower optimizer.lr" in errors[0]
    assert not (run_dir / "metrics.json").exists()  # the run did not finish


SUMMARY = {"best_checkpoint": "best.ckpt", "test/acc": 0.1, "train/img_per_s": 100.0, "epochs": 2,
           "fit_seconds": 3.0, "seconds_by_phase": {"training steps": 3.0}}


@pytest.mark.parametrize(("val_acc", "warned"), [(0.1028, True), (0.0, True), (0.2, False), (None, False)])
def test_the_summary_warns_in_one_line_when_validation_stays_at_chance(
    val_acc: float | None, warned: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    _print_summary(Path("run"), {**SUMMARY, "val/acc": val_acc}, chance=0.1)
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == int(warned)
    if warned:
        assert all(word in warnings[0] for word in ("chance level", "optimizer.lr", "trainer.max_epochs"))


def test_a_run_that_learns_nothing_says_so(tmp_path: Path, data_dir: Path) -> None:
    result = run_train("debug=fast", *TINY_SHAPES, "model=shallow", "insight=off", "optimizer.lr=0",
                       f"hydra.run.dir={tmp_path / 'run'}", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    warning = "is chance level (guessing: 0.1000): the model learned nothing"
    assert result.stdout.count(warning) == 1, result.stdout[-2000:]


def test_determinism_switches_cudnn_autotuning_off(compose_train: Callable[..., DictConfig]) -> None:
    """trainer=gpu turns autotuning on; trainer.deterministic=true must win over it."""
    from layerscope.apps.train import _build_trainer
    from layerscope.training.timing import PhaseTimer

    before = torch.backends.cudnn.benchmark
    try:
        for deterministic, expected in ((True, False), (False, True)):
            cfg = compose_train("debug=fast", *TINY_SHAPES, "insight=off", "trainer.benchmark=true",
                                f"trainer.deterministic={str(deterministic).lower()}")
            torch.backends.cudnn.benchmark = not expected
            _build_trainer(cfg, PhaseTimer(), "32-true")
            assert torch.backends.cudnn.benchmark is expected
    finally:
        torch.backends.cudnn.benchmark = before


@pytest.mark.parametrize(("overrides", "name"), [
    ([], "deep_shapes"),
    (["model=plain", "data=mnist"], "plain_mnist"),
    (["experiment=fashion_deep"], "deep_fashion_mnist"),  # a recipe's choices, not the command line's
    # model=torchvision and model=timm name their network: model.arch; a timm hub name opens no sub-folder
    (["model=mlp", "+model.arch=resnet18"], "resnet18_shapes"),
    (["model=mlp", "+model.arch=hf-hub:timm/resnet18"], "hf-hub-timm-resnet18_shapes"),
])
def test_run_folders_are_named_by_model_and_data(overrides: list[str], name: str) -> None:
    # The whole run, with the folder actually written, is in tests/apps/test_loggers.py.
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "hydra.job.num=3"], return_hydra_config=True)
    assert re.fullmatch(rf"outputs/\d{{4}}-\d{{2}}-\d{{2}}/\d{{2}}-\d{{2}}-\d{{2}}_{name}", cfg.hydra.run.dir)
    assert cfg.hydra.sweep.subdir == f"3_{name}"


def test_a_model_without_an_arch_is_named_by_its_option() -> None:
    assert model_name("timm", OmegaConf.create({"arch": "???"})) == "timm"  # arch not given yet
    assert model_name("deep", OmegaConf.create({"arch": None, "depth": 20})) == "deep"
    assert model_name("torchvision", OmegaConf.create({"arch": "convnext_tiny"})) == "convnext_tiny"

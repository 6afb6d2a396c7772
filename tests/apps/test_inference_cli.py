"""`python predict.py` and `python eval.py` end to end on a checkpoint trained in this session."""

from __future__ import annotations

import csv
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from tests.conftest import CONF, REPO, TINY_SHAPES


def run(script: str, *overrides: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / script), *overrides], capture_output=True, text=True,
                          timeout=300, cwd=cwd or REPO)


def save_png(image: torch.Tensor, path: Path) -> Path:
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    return path


def huge_png(path: Path, side: int = 30_000) -> Path:
    """A tiny file whose header claims side x side pixels (a decompression bomb)."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    header = b"IHDR" + struct.pack(">II", side, side) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def test_images(tiny_run: Path, data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The tiny run's test split, as eval.py sees it."""
    cache = data_dir / "shapes" / "test-300-32px-seed0-v2.pt"  # TINY_SHAPES' test split
    stored = torch.load(cache, weights_only=True)
    return stored["images"], stored["labels"]


def test_predict_a_folder_with_a_bad_file(tiny_run: Path, tmp_path: Path, test_images) -> None:
    images, _ = test_images
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    save_png(images[0], folder / "a.png")
    grey = Image.fromarray(images[1].permute(1, 2, 0).numpy()).convert("L").resize((64, 48))
    grey.save(folder / "sub" / "b.jpg")  # another format, size and colour mode
    (folder / "notes.txt").write_text("not an image")
    huge_png(folder / "bomb.png")
    result = run("predict.py", f"ckpt_path={tiny_run / 'checkpoints' / 'best.ckpt'}", f"input={folder}")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["path"]).name for r in records] == ["a.png", "b.jpg"]
    for record in records:
        assert set(record) == {"path", "label", "prob", "top_k", "ood_score", "in_distribution"}
        assert isinstance(record["ood_score"], float) and isinstance(record["in_distribution"], bool)
        assert record["label"] == record["top_k"][0][0] and 0 < record["prob"] <= 1
        assert len(record["top_k"]) == 3
    assert "notes.txt: not an image file" in result.stderr
    assert "bomb.png: too large" in result.stderr


def test_predict_to_csv_and_explain(tiny_run: Path, tmp_path: Path, test_images) -> None:
    image = save_png(test_images[0][3], tmp_path / "x.png")
    out = tmp_path / "preds.csv"
    result = run("predict.py", f"ckpt_path={tiny_run / 'checkpoints' / 'best.ckpt'}", f"input={image}",
                 f"output={out}", "explain=true", f"out_dir={tmp_path / 'why'}")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["path"] == str(image)
    assert rows[0]["in_distribution"] in {"true", "false"} and float(rows[0]["ood_score"]) < 0
    pictures = sorted(p.name for p in (tmp_path / "why" / "x.png").iterdir())  # named as the image
    assert pictures[-2:] == ["grad_cam.png", "prediction.json"]
    page = json.loads((tmp_path / "why" / "x.png" / "prediction.json").read_text())
    assert page["label"] == rows[0]["label"] and page["ood_score"] == float(rows[0]["ood_score"])
    assert page["ood"]["score"] == "react_energy" and page["ood"]["in_distribution"] == "score <= threshold"
    assert page["in_distribution"] == (page["ood_score"] <= page["ood"]["threshold"])
    assert len([p for p in pictures if p.startswith("feature_maps_")]) == 8  # ResNet-8's layers
    with Image.open(tmp_path / "why" / "x.png" / "grad_cam.png") as cam:
        assert cam.size == (64, 32)  # the image beside its Grad-CAM overlay


def test_eval_agrees_with_predict(tiny_run: Path, tmp_path: Path, data_dir: Path, test_images) -> None:
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    out = tmp_path / "eval"
    result = run("eval.py", f"ckpt_path={ckpt}", f"paths.data_dir={data_dir}", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert metrics["images"] == len(rows) == 300
    correct = sum(r["label"] == r["predicted"] for r in rows)
    assert metrics["test/acc"] == pytest.approx(correct / len(rows))
    assert set(metrics["test/per_class_acc"]) == {"face", "house", "tree", "car", "snowman", "target",
                                                  "umbrella", "robot", "sign", "dumbbell"}
    assert "all" in result.stdout and "accuracy" in result.stdout
    classes = torch.load(ckpt, weights_only=True)["hyper_parameters"]["data_info"]["classes"]
    images, labels = test_images
    for index in (0, 7):
        assert rows[index]["label"] == classes[labels[index]]  # eval's rows follow the test split
        image = save_png(images[index], tmp_path / f"t{index}.png")
        predicted = run("predict.py", f"ckpt_path={ckpt}", f"input={image}")
        assert json.loads(predicted.stdout)["label"] == rows[index]["predicted"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["input={tmp}/none.png"], "does not exist"),
        (["input={tmp}/empty"], "holds no files"),
        (["input={tmp}/junk.txt"], "no readable image"),
        (["input={tmp}/junk.txt", "ckpt_path={tmp}/missing.ckpt"], "no checkpoint at"),
        (["input={tmp}/ok.png", "output={tmp}/preds.json"], "must end in .csv"),
    ],
    ids=["missing-input", "empty-folder", "not-an-image", "missing-checkpoint", "bad-output"],
)
def test_predict_bad_input_ends_in_one_line(tiny_run: Path, tmp_path: Path, args: list[str], message: str,
                                            test_images) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.txt").write_text("hello")
    save_png(test_images[0][0], tmp_path / "ok.png")
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    overrides = [f"ckpt_path={ckpt}", *(a.format(tmp=tmp_path) for a in args)]
    result = run("predict.py", *overrides)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr
    assert result.stdout == ""


def test_eval_refuses_data_of_another_shape(tiny_run: Path, tmp_path: Path) -> None:
    result = run("eval.py", f"ckpt_path={tiny_run / 'checkpoints' / 'best.ckpt'}", "data=fashion_mnist",
                 f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 2
    assert result.stderr.startswith("error: the checkpoint expects 3x32x32 images of 10 classes")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "eval").exists()  # nothing left behind


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_round_trip(tiny_run: Path, tmp_path: Path, fmt: str) -> None:
    result = run("export.py", f"ckpt_path={tiny_run / 'checkpoints' / 'best.ckpt'}", f"format={fmt}",
                 f"out_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    model_file = tmp_path / ("model.onnx" if fmt == "onnx" else "model.torchscript.pt")
    metadata = json.loads(model_file.with_name(f"{model_file.name}.json").read_text())
    assert metadata["classes"][0] == "face" and metadata["preprocessing"]["size"] == 32
    assert metadata["checked"]["max_abs_difference"] < 1e-3
    assert "largest difference from PyTorch" in result.stdout
    calibration = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)["layerscope_ood"]
    assert metadata["out_of_distribution"]["threshold"] == calibration["thresholds"]["react_energy"]
    assert metadata["out_of_distribution"]["clip"] == calibration["clip"] > 0
    assert metadata["out_of_distribution"]["formula"] == "-logsumexp(W @ min(f, clip) + b)"
    images = torch.randn(3, 3, 32, 32)
    reference = torch.jit.load(str(model_file))(images) if fmt == "torchscript" else None
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
        reference = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    from layerscope.inference import load_classifier

    expected = load_classifier(tiny_run / "checkpoints" / "best.ckpt").model(images)
    assert torch.allclose(reference, expected, atol=1e-4)  # any batch size, not only the traced one


def test_export_refuses_an_unknown_format(tiny_run: Path, tmp_path: Path) -> None:
    result = run("export.py", f"ckpt_path={tiny_run / 'checkpoints' / 'best.ckpt'}", "format=tflite",
                 f"out_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr == "error: format=tflite is not supported: choose onnx or torchscript\n"


def touch(marker: Path) -> dict[str, Any]:
    """A config that creates ``marker`` when Hydra builds it: a stand-in for any other callable."""
    return {"_target_": "pathlib.Path.touch", "_args_": [str(marker)]}


def copied_run(tiny_run: Path, folder: Path) -> Path:
    """A copy of the tiny run's checkpoint and saved config; returns the checkpoint."""
    (folder / "checkpoints").mkdir(parents=True)
    shutil.copytree(tiny_run / ".hydra", folder / ".hydra")
    return Path(shutil.copy(tiny_run / "checkpoints" / "best.ckpt", folder / "checkpoints" / "best.ckpt"))


def refused_in_one_line(result: subprocess.CompletedProcess[str], key: str, marker: Path) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert f"{key}=" in result.stderr and "not one of layerscope's own builders" in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("script", ["predict.py", "eval.py", "export.py"])
@pytest.mark.parametrize("where", ["top", "nested"])
def test_entry_points_refuse_a_checkpoint_naming_other_code(tiny_run: Path, tmp_path: Path, data_dir: Path,
                                                             test_images, script: str, where: str) -> None:
    marker = tmp_path / "marker"
    ckpt = copied_run(tiny_run, tmp_path / "run")
    checkpoint = torch.load(ckpt, weights_only=True)
    if where == "top":
        checkpoint["hyper_parameters"]["model_config"] = touch(marker)
        key = "model_config._target_"
    else:  # Hydra builds nested configs before the model that would refuse the argument
        checkpoint["hyper_parameters"]["model_config"]["extra"] = [{**touch(marker), "_partial_": False}]
        key = "model_config.extra[0]._target_"
    torch.save(checkpoint, ckpt)
    extra = {
        "predict.py": [f"input={save_png(test_images[0][0], tmp_path / 'x.png')}"],
        "eval.py": [f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'out'}"],
        "export.py": ["format=torchscript", f"out_dir={tmp_path / 'out'}"],
    }[script]
    result = run(script, f"ckpt_path={ckpt}", *extra)
    refused_in_one_line(result, key, marker)
    assert result.stdout == "" and not (tmp_path / "out").exists()
    assert not (tmp_path / "run" / "export").exists()


@pytest.mark.parametrize("where", ["top", "nested"])
def test_eval_refuses_a_run_config_naming_other_code(tiny_run: Path, tmp_path: Path, data_dir: Path,
                                                     where: str) -> None:
    marker = tmp_path / "marker"
    ckpt = copied_run(tiny_run, tmp_path / "run")
    saved = OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml")
    if where == "top":
        saved.data = {"_target_": "os.makedirs", "name": str(marker)}
        key = "data._target_"
    else:
        saved.data.source = touch(marker)
        key = "data.source._target_"
    OmegaConf.save(saved, tmp_path / "run" / ".hydra" / "config.yaml")
    result = run("eval.py", f"ckpt_path={ckpt}", f"paths.data_dir={data_dir}",
                 f"hydra.run.dir={tmp_path / 'out'}")
    refused_in_one_line(result, key, marker)
    assert str(tmp_path / "run" / ".hydra" / "config.yaml") in result.stderr
    assert not (tmp_path / "out").exists()


def test_eval_reports_what_training_reported_with_test_time_views(tmp_path: Path, data_dir: Path) -> None:
    from hydra import compose, initialize_config_dir

    from layerscope.apps.cli import register_resolvers
    from layerscope.apps.train import train

    run_dir = tmp_path / "run"
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.data_dir={data_dir}", f"paths.output_dir={run_dir}", *TINY_SHAPES, "model.depth=8",
            "trainer.max_epochs=2", "insight=off", "data.batch_size=100",
            "module.test_time_flip=true", "module.test_time_shift=1",
        ])
    trained = train(cfg)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as `python train.py` leaves it
    result = run("eval.py", f"ckpt_path={trained['best_checkpoint']}", f"paths.data_dir={data_dir}",
                 f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["test_time_flip"] is True and evaluated["test_time_shift"] == 1
    assert evaluated["precision"] == trained["precision"]  # auto chooses alike for both on one machine
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    assert evaluated["test/loss"] == pytest.approx(trained["test/loss"], rel=1e-5)
    rows = list(csv.DictReader((tmp_path / "eval" / "predictions.csv").open()))
    assert sum(r["label"] == r["predicted"] for r in rows) / len(rows) == pytest.approx(trained["test/acc"])


def test_an_uncalibrated_checkpoint_predicts_and_says_so_in_one_line(tiny_run: Path, tmp_path: Path,
                                                                     data_dir: Path, test_images) -> None:
    """A checkpoint from before calibration existed; then eval.py calibrate=true gives it one."""
    contents = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)
    calibrated = contents.pop("layerscope_ood")
    (tmp_path / "checkpoints").mkdir()
    old = tmp_path / "checkpoints" / "old.ckpt"
    torch.save(contents, old)
    image = save_png(test_images[0][0], tmp_path / "x.png")
    result = run("predict.py", f"ckpt_path={old}", f"input={image}")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["in_distribution"] is None and isinstance(record["ood_score"], float)
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "carries no out-of-distribution calibration" in notes[0]
    assert f"python eval.py ckpt_path={old} calibrate=true" in notes[0]

    result = run("eval.py", f"ckpt_path={old}", "calibrate=true", "data=shapes", *TINY_SHAPES,
                 f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr
    assert "Calibrated:" in result.stdout
    stored = torch.load(old, weights_only=True)["layerscope_ood"]
    assert stored["step"] == contents["global_step"] and stored["images"] == calibrated["images"] == 200
    # The same validation images through the same weights: the thresholds training stored.
    for name, threshold in calibrated["thresholds"].items():
        assert stored["thresholds"][name] == pytest.approx(threshold, abs=1e-4)
    result = run("predict.py", f"ckpt_path={old}", f"input={image}")
    assert isinstance(json.loads(result.stdout)["in_distribution"], bool) and "note:" not in result.stderr

"""Predicting a folder: batch by batch, every image once, outputs whole, explanations kept apart."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from layerscope.apps.predict import predict
from layerscope.errors import UserError
from layerscope.inference import Classifier, load_classifier
from layerscope.inference.predict import FolderPrediction
from layerscope.models import cifar_resnet

INFO = {"name": "tiny", "classes": ["a", "b", "c"], "in_channels": 3, "image_size": 16,
        "mean": [0.5] * 3, "std": [0.25] * 3}
MODEL = {"_target_": "layerscope.models.cifar_resnet", "depth": 8, "in_channels": 3, "num_classes": 3,
         "image_size": 16}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of a randomly initialised ResNet-8, in the layout training saves."""
    torch.manual_seed(0)
    model = cifar_resnet(depth=8, num_classes=3, image_size=16)
    path = tmp_path_factory.mktemp("ckpt") / "random.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model_config": MODEL, "data_info": INFO}}, path)
    return path


def images_in(folder: Path, names: list[str]) -> list[Path]:
    """Random colour images of assorted sizes at ``folder/name`` for each name."""
    generator = torch.Generator().manual_seed(1)
    paths = []
    for index, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (12 + index, 20, 3), dtype=torch.uint8, generator=generator)
        Image.fromarray(pixels.numpy()).save(path)
        paths.append(path)
    return paths


def settings(checkpoint: Path, folder: Path, **overrides: object) -> DictConfig:
    return OmegaConf.create({"ckpt_path": str(checkpoint), "input": str(folder), "output": None, "top_k": 2,
                             "batch_size": 4, "device": "cpu", "explain": False, "out_dir": "unused",
                             **overrides})


def test_images_are_decoded_one_batch_at_a_time(checkpoint: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    clf = load_classifier(checkpoint)
    files = images_in(tmp_path, [f"{i:02d}.png" for i in range(10)])
    decoded = []
    monkeypatch.setattr(clf, "load", lambda path: decoded.append(path) or Classifier.load(clf, path))
    results = iter(FolderPrediction(clf, files, batch_size=4))
    next(results)
    assert len(decoded) == 4  # the first answer comes before the rest of the folder is read
    assert len(list(results)) == 9 and decoded == files


def test_a_folder_larger_than_a_batch_gets_what_one_batch_would_give(checkpoint: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    files = images_in(tmp_path / "in", [f"{i:02d}.png" for i in range(11)])
    assert predict(settings(checkpoint, tmp_path / "in", batch_size=4)) == 11
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in records] == [str(f) for f in files]
    all_at_once = load_classifier(checkpoint).predict(files, batch_size=len(files))
    assert [r["label"] for r in records] == all_at_once.labels
    expected = torch.tensor([top[0][1] for top in all_at_once.top_k(1)])
    assert torch.allclose(torch.tensor([r["prob"] for r in records]), expected, atol=2e-6)


def test_the_csv_holds_every_image_and_unreadable_files_are_skipped(checkpoint: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    files = images_in(tmp_path / "in", [f"{i:02d}.png" for i in range(9)])
    (tmp_path / "in" / "05-notes.txt").write_text("not an image")  # in the middle of the second batch
    out = tmp_path / "preds.csv"
    assert predict(settings(checkpoint, tmp_path / "in", output=str(out))) == 9
    rows = list(csv.DictReader(out.open()))
    assert [row["path"] for row in rows] == [str(f) for f in files]
    assert all(row["label"] == row["top_k"].split(";")[0].split(":")[0] for row in rows)
    captured = capsys.readouterr()
    assert captured.out == "" and "05-notes.txt: not an image file" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "preds.csv"]  # no temporary file left


def test_a_run_that_fails_midway_leaves_the_earlier_csv_whole(checkpoint: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    images_in(tmp_path / "in", [f"{i:02d}.png" for i in range(9)])
    out = tmp_path / "preds.csv"
    out.write_text("the earlier predictions\n")
    calls = []

    def fails_on_the_second_batch(self: Classifier, images: torch.Tensor, batch_size: int = 256):
        calls.append(len(images))
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return original(self, images, batch_size)

    original = Classifier.predict
    monkeypatch.setattr(Classifier, "predict", fails_on_the_second_batch)
    with pytest.raises(RuntimeError, match="out of memory"):
        predict(settings(checkpoint, tmp_path / "in", output=str(out)))
    assert out.read_text() == "the earlier predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "preds.csv"]


def test_nothing_readable_is_one_line_and_writes_no_csv(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("hello")
    with pytest.raises(UserError, match="no readable image among 1 file") as err:
        predict(settings(checkpoint, tmp_path / "in", output=str(tmp_path / "preds.csv")))
    assert "\n" not in str(err.value) and "a.txt: not an image file" in str(err.value)
    assert not (tmp_path / "preds.csv").exists()


def test_same_named_images_get_separate_explanations(checkpoint: Path, tmp_path: Path) -> None:
    names = ["a/cat.png", "b/cat.png", "a/cat.jpg"]
    images_in(tmp_path / "in", names)
    out = tmp_path / "why"
    predict(settings(checkpoint, tmp_path / "in", explain=True, out_dir=str(out),
                     output=str(tmp_path / "p.csv")))
    for name in names:
        assert (out / name / "grad_cam.png").is_file(), name
    # each folder holds its own image's explanation, not the last one written over the others
    pictures = {(out / name / "grad_cam.png").read_bytes() for name in names}
    assert len(pictures) == 3


def test_device_auto_is_the_gpu_where_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from layerscope.apps.eval import trainer_placement
    from layerscope.inference.loading import choose_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto") == "cpu" and choose_device("cuda:1") == "cuda:1"
    assert trainer_placement("auto") == {"accelerator": "cpu", "devices": 1}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto") == "cuda"
    assert trainer_placement("auto") == {"accelerator": "gpu", "devices": 1}


def test_predictions_use_16_bits_on_a_gpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from layerscope.inference.loading import inference_autocast

    assert inference_autocast(torch.device("cpu")) is None  # fp32, as eval.py computes
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert inference_autocast(torch.device("cuda")) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # before Ampere: fp16
    assert inference_autocast(torch.device("cuda", 1)) == torch.float16

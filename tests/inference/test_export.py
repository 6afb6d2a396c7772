"""export_checked: a model is kept only once it matches PyTorch, and then with a JSON that says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from layerscope.errors import UserError
from layerscope.inference import Classifier
from layerscope.inference.export import EXPORTERS, FORMATS, export_checked, metadata_path
from layerscope.models import cifar_resnet

INFO = {"classes": ["a", "b", "c"], "in_channels": 3, "image_size": 16, "mean": [0.5] * 3, "std": [0.25] * 3}


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    """A randomly initialised ResNet-8: the export is checked against whatever weights it has."""
    torch.manual_seed(0)
    return Classifier(cifar_resnet(depth=8, num_classes=3, image_size=16), INFO)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_passing_export_writes_the_model_and_its_json(classifier: Classifier, tmp_path: Path,
                                                        fmt: str) -> None:
    out = tmp_path / "new" / "export"  # created as needed
    metadata = export_checked(classifier, fmt, out, tmp_path / "x.ckpt", check_batch=4)
    model = out / FORMATS[fmt]
    assert sorted(p.name for p in out.iterdir()) == sorted([model.name, metadata_path(model).name])
    assert json.loads(metadata_path(model).read_text()) == metadata
    assert metadata["checked"] == {"inputs": 4, "max_abs_difference": pytest.approx(0, abs=1e-4)}
    assert metadata["classes"] == INFO["classes"] and metadata["file"] == model.name
    if fmt == "torchscript":  # the figure in the JSON is the difference of the file that was kept
        images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            kept = (torch.jit.load(str(model))(images) - classifier.model(images)).abs().max().item()
        assert kept == pytest.approx(metadata["checked"]["max_abs_difference"])


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_failed_check_leaves_nothing_new_and_keeps_the_earlier_export(classifier: Classifier,
                                                                        tmp_path: Path, fmt: str) -> None:
    model = tmp_path / FORMATS[fmt]
    model.write_bytes(b"the earlier, checked model")
    metadata_path(model).write_text('{"checked": "earlier"}\n')
    with pytest.raises(UserError, match=r"differs from PyTorch by .* \(more than tolerance=-1\)") as err:
        export_checked(classifier, fmt, tmp_path, tmp_path / "x.ckpt", check_batch=4, tolerance=-1)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([model.name, metadata_path(model).name])
    assert model.read_bytes() == b"the earlier, checked model"
    assert metadata_path(model).read_text() == '{"checked": "earlier"}\n'


def test_a_failed_check_removes_the_folders_it_made(classifier: Classifier, tmp_path: Path) -> None:
    with pytest.raises(UserError):
        export_checked(classifier, "torchscript", tmp_path / "run" / "export", tmp_path / "x.ckpt",
                       check_batch=2, tolerance=-1)
    assert list(tmp_path.iterdir()) == []


def test_an_exporter_that_crashes_leaves_no_temporary_file(classifier: Classifier, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(clf: Classifier, path: Path, example: torch.Tensor) -> None:
        path.write_bytes(b"half a model")
        raise RuntimeError("exporter failed")

    monkeypatch.setitem(EXPORTERS, "onnx", broken)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_checked(classifier, "onnx", tmp_path, tmp_path / "x.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_format_is_refused_before_anything_is_written(classifier: Classifier,
                                                                 tmp_path: Path) -> None:
    with pytest.raises(UserError, match="format=tflite is not supported: choose onnx or torchscript"):
        export_checked(classifier, "tflite", tmp_path / "export", tmp_path / "x.ckpt")
    assert not (tmp_path / "export").exists()

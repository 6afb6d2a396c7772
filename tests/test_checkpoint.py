"""The checkpoint format: training stamps its version, older versions are upgraded on reading,
newer ones are refused in one line, and every reader (predict, eval, resume) gets the same answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from layerscope.checkpoint import FORMAT_KEY, FORMAT_VERSION, read_checkpoint
from layerscope.errors import UserError
from layerscope.inference import load_classifier
from layerscope.training.module import ImageClassifier


def _resaved(tiny_run: Path, tmp_path: Path, change) -> Path:
    checkpoint = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)
    change(checkpoint)
    path = tmp_path / "changed.ckpt"
    torch.save(checkpoint, path)
    return path


def test_training_writes_the_current_format(tiny_run: Path) -> None:
    raw = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)
    assert raw[FORMAT_KEY] == FORMAT_VERSION
    checkpoint = read_checkpoint(tiny_run / "checkpoints" / "best.ckpt")
    assert checkpoint.version == FORMAT_VERSION
    assert checkpoint.data_info == raw["hyper_parameters"]["data_info"]  # nothing to upgrade
    assert checkpoint.model_config == raw["hyper_parameters"]["model_config"]


def test_a_first_version_checkpoint_is_upgraded_as_it_is_read(tiny_run: Path, tmp_path: Path) -> None:
    def as_first_written(checkpoint: dict) -> None:
        del checkpoint[FORMAT_KEY]
        hparams = checkpoint["hyper_parameters"]
        del hparams["data_info"]["resize_size"], hparams["test_time_flip"], hparams["test_time_shift"]
        hparams["model_config"]["_target_"] = "layerscope.models.resnet"

    old = read_checkpoint(_resaved(tiny_run, tmp_path, as_first_written))
    new = read_checkpoint(tiny_run / "checkpoints" / "best.ckpt")
    assert old.version == 1
    assert old.model_config == new.model_config  # the builder under its current name
    assert old.data_info["resize_size"] == old.data_info["image_size"] == 32
    assert old.test_views == {"test_time_flip": False, "test_time_shift": 0}
    # The module eval tests with and the classifier predict uses agree on the same weights.
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    module = ImageClassifier.from_checkpoint(old).eval()
    clf = load_classifier(old.path)
    with torch.no_grad():
        from_module = module(clf.to_batch(images)).softmax(1)
    assert torch.allclose(from_module, clf.predict(images).probs, atol=1e-6)


def test_a_newer_format_is_refused_in_one_line(tiny_run: Path, tmp_path: Path) -> None:
    path = _resaved(tiny_run, tmp_path, lambda c: c.update({FORMAT_KEY: FORMAT_VERSION + 1}))
    with pytest.raises(UserError, match=rf"format {FORMAT_VERSION + 1}.*upgrade layerscope"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["hyper_parameters"]["data_info"].pop("mean"), "data_info lacks mean"),
        (lambda c: c["hyper_parameters"].update(model_config=[1, 2]), "not a mapping"),
        (lambda c: c["hyper_parameters"].update(test_time_shift="1"), "test_time_shift='1'"),
    ],
    ids=["no-mean", "config-list", "shift-text"],
)
def test_a_damaged_layout_is_one_line(tiny_run: Path, tmp_path: Path, change, message: str) -> None:
    with pytest.raises(UserError, match=message):
        read_checkpoint(_resaved(tiny_run, tmp_path, change))


def test_resume_refuses_another_model_and_accepts_its_own(tiny_run: Path) -> None:
    checkpoint = read_checkpoint(tiny_run / "checkpoints" / "best.ckpt")
    checkpoint.check_continues(checkpoint.model_config, checkpoint.data_info)
    with pytest.raises(UserError, match="trained with another model or data"):
        checkpoint.check_continues({**checkpoint.model_config, "depth": 14}, checkpoint.data_info)
    with pytest.raises(UserError, match="expects 3x32x32 images"):
        checkpoint.check_continues(checkpoint.model_config, {**checkpoint.data_info, "image_size": 28})

"""load_classifier: a checkpoint alone predicts, shows its feature maps, and refuses bad files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from layerscope.checkpoint import check_fits, read_checkpoint, run_folder
from layerscope.errors import UserError
from layerscope.inference import load_classifier


class Payload:
    """Unpickling this would create the marker file: a stand-in for malicious code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_classifier_predicts_what_the_trained_module_predicts(tiny_run: Path) -> None:
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    clf = load_classifier(ckpt)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    predictions = clf.predict(images)
    assert predictions.probs.shape == (5, 10)
    assert torch.allclose(predictions.probs.sum(1), torch.ones(5), atol=1e-5)
    assert len(predictions.labels) == 5 and set(predictions.labels) <= set(clf.classes)
    top = predictions.top_k(3)
    assert [len(t) for t in top] == [3] * 5 and top[0][0][0] == predictions.labels[0]
    # The same numbers as the model inside the checkpoint, preprocessed by hand.
    state = torch.load(ckpt, weights_only=True)
    info = state["hyper_parameters"]["data_info"]
    mean, std = torch.tensor(info["mean"]).view(1, 3, 1, 1), torch.tensor(info["std"]).view(1, 3, 1, 1)
    logits = clf.model((images.float() / 255 - mean) / std)
    assert torch.allclose(logits.softmax(1), predictions.probs, atol=1e-5)


def test_feature_maps_come_layer_by_layer(tiny_run: Path) -> None:
    clf = load_classifier(tiny_run / "checkpoints" / "best.ckpt")
    maps = clf.feature_maps(torch.zeros(3, 32, 32, dtype=torch.uint8))
    assert list(maps) == [name for name, _ in clf.model.named_layers()]
    assert maps["stem"].shape == (16, 32, 32) and maps["fc"].shape == (10,)
    assert all(not m._forward_hooks for m in clf.model.modules())


def test_wrong_input_shape_is_a_user_error(tiny_run: Path) -> None:
    clf = load_classifier(tiny_run / "checkpoints" / "best.ckpt")
    with pytest.raises(UserError, match=r"uint8 of shape \(N, 3, 32, 32\)"):
        clf.predict(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"extra": Payload(marker)}}, bad)
    with pytest.raises(UserError, match="could run code"):
        read_checkpoint(bad)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):  # the file really does carry the payload
        pickle.loads(pickle.dumps(Payload(tmp_path / "missing" / "x")))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p, ckpt: None, "no checkpoint at"),
        (lambda p, ckpt: p.write_bytes(ckpt.read_bytes()[:50_000]), "truncated or corrupt"),
        (lambda p, ckpt: p.write_text("hello"), "truncated or corrupt"),
        (lambda p, ckpt: torch.save({"weights": torch.zeros(3)}, p), "not a layerscope checkpoint"),
    ],
    ids=["missing", "truncated", "text", "other-program"],
)
def test_bad_checkpoints_end_in_one_clear_message(tiny_run: Path, tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad.ckpt"
    make(path, tiny_run / "checkpoints" / "best.ckpt")
    with pytest.raises(UserError, match=message):
        load_classifier(path)


def test_the_package_exposes_load_classifier_and_reads_image_files(tiny_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    from layerscope import load_classifier as exposed

    Image.new("RGB", (50, 40), (200, 30, 30)).save(tmp_path / "red.jpg")
    Image.new("L", (20, 20), 128).save(tmp_path / "grey.png")
    clf = exposed(tiny_run / "checkpoints" / "best.ckpt")
    predictions = clf.predict([tmp_path / "red.jpg", tmp_path / "grey.png"])  # colour and grey, any size
    assert predictions.probs.shape == (2, 10)


def test_run_folder_holds_the_checkpoints_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_folder("outputs/day/time/checkpoints/best.ckpt") == tmp_path / "outputs" / "day" / "time"


def test_check_fits_names_both_sides_and_what_to_do() -> None:
    trained_on = {"name": "shapes", "classes": ["face", "house"], "in_channels": 3, "image_size": 32}
    check_fits(trained_on, {**trained_on, "name": "shapes-copy"}, "unused")
    other = {"name": "mnist", "classes": ["0", "1"], "in_channels": 1, "image_size": 28}
    expected = (r"expects 3x32x32 images of 2 classes \(face, house, \.\.\.\); "
                r"data=mnist has 1x28x28 images of 2 classes \(0, 1, \.\.\.\): do this")
    with pytest.raises(UserError, match=expected):
        check_fits(trained_on, other, "do this")
    with pytest.raises(UserError, match="data=shapes has 3x32x32 images of 2 classes"):
        check_fits(trained_on, {**trained_on, "classes": ["house", "face"]}, "do this")  # another order

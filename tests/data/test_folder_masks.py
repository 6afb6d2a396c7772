"""A user's own concept masks beside an image folder: read, fitted, checked, and dissected right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from layerscope.data.datamodule import ImageDataModule
from layerscope.data.imagefolder import ImageFolderSource, class_names
from layerscope.errors import UserError
from layerscope.insight.dissection import NONE, detector_shares, dissect

SIZE = 16


def _drawn(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index``: a square (its red channel) and a bar (its green channel), each somewhere else."""
    square = np.zeros((SIZE, SIZE), dtype=bool)
    row, col = index % 8, (3 * index) % 8
    square[row : row + 5, col : col + 5] = True
    bar = np.zeros((SIZE, SIZE), dtype=bool)
    bar[(index * 5) % 14 : (index * 5) % 14 + 2, :] = True
    return square, bar


def make_masked_folder(root: Path, per_class: int = 10) -> Path:
    """Two classes of drawn images, with masks of ``square`` (a part) and ``bar`` (a kind of our own)."""
    (root / "masks").mkdir(parents=True)
    (root / "masks" / "concepts.yaml").write_text("square: part\nbar: stripe\n")
    for label, name in enumerate(("left", "right")):
        for i in range(per_class):
            square, bar = _drawn(label * per_class + i)
            pixels = np.stack([square, bar, np.zeros_like(bar)], axis=-1).astype(np.uint8) * 255
            relative = Path(name) / f"{i}.png"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / relative)
            for concept, mask in (("square", square), ("bar", bar)):
                path = root / "masks" / concept / f"{relative}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return root


def _data(root: Path) -> ImageDataModule:
    source = ImageFolderSource(str(root), image_size=SIZE, in_channels=3)
    data = ImageDataModule(source, "imagefolder", in_channels=3, num_classes=2, image_size=SIZE,
                           val_size=8, test_size=4)
    data.setup()
    return data


class CopyChannels(nn.Module):
    """Unit 0 is the red channel (the squares), unit 1 the green (the bars): masks copied."""

    def __init__(self) -> None:
        super().__init__()
        self.copy = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.copy.weight.zero_()
            self.copy.weight[0, 0] = self.copy.weight[1, 1] = 1.0

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [("copy", self.copy)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.copy(x)


def test_the_masks_folder_is_no_class_and_its_masks_are_read_for_validation(tmp_path: Path) -> None:
    root = make_masked_folder(tmp_path / "photos")
    assert class_names(root) == ["left", "right"]
    data = _data(root)
    concepts = data.concept_masks(torch.arange(8))
    assert concepts is not None and concepts.sources is not None
    mine = concepts.groups()[0]
    assert [concepts.names[k] for k in mine] == ["square", "bar"]
    assert [concepts.kinds[k] for k in mine] == ["part", "stripe"]
    images = data.val.images[:8]
    # Each mask is where its image drew the concept: red for squares, green for bars.
    assert torch.equal(concepts.masks[:, 0], images[:, 0] > 0)
    assert torch.equal(concepts.masks[:, 1], images[:, 1] > 0)
    assert {concepts.names[k] for k in concepts.groups()[1]} >= {"edge", "red"}  # computed ones join


def test_units_that_copy_a_users_masks_are_labelled_with_them(tmp_path: Path) -> None:
    data = _data(make_masked_folder(tmp_path / "photos"))
    concepts = data.concept_masks(torch.arange(8))
    assert concepts is not None
    model = CopyChannels()
    layers = dissect(model, lambda b: model(b.float() / 255), data.val.images[:8], concepts.masks,
                     quantile=0.01, iou_threshold=0.04, groups=concepts.groups())
    (copy,) = layers
    assert copy.labels[:, 0].tolist() == [0, 1]  # square, bar: their own group
    assert torch.allclose(copy.iou[[0, 1], [0, 1]], torch.ones(2))
    shares = detector_shares(copy.labels, concepts.kinds)
    assert shares["part"] == 0.5 and shares["stripe"] == 0.5  # a kind of the user's own is reported
    assert NONE not in copy.labels[:, 0].tolist()


@pytest.mark.parametrize(("breakage", "says"), [
    ("missing", "missing; every image the dissection reads needs a mask of every concept"),
    ("size", "8x8 pixels, but its image"),
    ("grey", "not binary"),
    ("no kind", "a concept folder with no kind"),
    ("bad yaml", "write one line per concept"),
])
def test_a_bad_mask_ends_in_one_line_naming_the_file(tmp_path: Path, breakage: str, says: str) -> None:
    root = make_masked_folder(tmp_path / "photos")
    masks = sorted((root / "masks" / "square").rglob("*.png"))
    if breakage == "missing":
        for path in masks:
            path.unlink()
    elif breakage == "size":
        for path in masks:
            Image.new("L", (8, 8)).save(path)
    elif breakage == "grey":
        for path in masks:
            Image.new("L", (SIZE, SIZE), 128).save(path)
    elif breakage == "no kind":
        (root / "masks" / "circle").mkdir()
    else:
        (root / "masks" / "concepts.yaml").write_text("- square\n- bar\n")
    data = _data(root)
    with pytest.raises(UserError) as caught:
        data.concept_masks(torch.arange(8))
    message = str(caught.value)
    assert says in message and "\n" not in message
    assert str(root / "masks") in message  # names the file or folder

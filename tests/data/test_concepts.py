"""Concepts computed from the pixels: edges, colours and silhouettes land where a drawing put them."""

from __future__ import annotations

from pathlib import Path

import torch

from layerscope.data.concepts import COLOURS, colour_masks, image_concepts, intensity_edges, silhouettes
from layerscope.data.torchvision_sets import IdxSource
from layerscope.insight.dissection import detector_shares, dissect
from tests.data.test_datamodule import make


def _square(size: int = 32, low: int = 8, high: int = 24) -> torch.Tensor:
    """One grey image: a white square on black, its outline a one-pixel ramp (half grey), as a
    drawing's antialiased border is."""
    image = torch.zeros(1, 1, size, size, dtype=torch.uint8)
    image[..., low - 1 : high + 1, low - 1 : high + 1] = 128
    image[..., low:high, low:high] = 255
    return image


def test_edges_lie_on_the_outline_of_what_is_drawn_one_pixel_wide() -> None:
    edges = intensity_edges(_square())[0]
    outline = torch.zeros(32, 32, dtype=torch.bool)
    outline[7:25, 7:25] = True
    outline[8:24, 8:24] = False  # the ramp between the square and the background
    corners = torch.zeros(32, 32, dtype=torch.bool)  # where Canny cuts the square's corners diagonally
    for row in (7, 23):
        for col in (7, 23):
            corners[row : row + 2, col : col + 2] = True
    assert torch.equal(edges & ~corners, outline & ~corners)  # on the outline, one pixel wide, nowhere else
    # Each corner: the outer pixel left out, the one diagonally inside it taken.
    assert (edges & corners).sum() == 3 * 4 and not edges[7, 7] and edges[8, 8]
    assert not intensity_edges(torch.full((2, 3, 16, 16), 90, dtype=torch.uint8)).any()  # flat: none


def test_each_pixel_takes_the_name_of_its_colour() -> None:
    drawn = {"red": (230, 20, 20), "green": (20, 180, 40), "blue": (20, 40, 230),
             "yellow": (250, 240, 20), "white": (255, 255, 255), "black": (0, 0, 0)}
    rows = [torch.tensor(rgb, dtype=torch.uint8)[:, None].expand(3, 4) for rgb in drawn.values()]
    image = torch.stack(rows, dim=1)[None]  # (1, 3, 6 rows, 4 columns): one row per colour
    masks = colour_masks(image)[0]
    assert masks.sum(dim=0).eq(1).all()  # exactly one name per pixel
    names = list(COLOURS)
    for row, name in enumerate(drawn):
        assert masks[names.index(name), row].all(), name


def test_silhouettes_are_the_foreground_under_each_images_own_class() -> None:
    images = torch.cat([_square(), _square(low=4, high=12)])
    foreground = IdxSource("unused", "fashion_mnist", download=False).foreground(images)
    assert torch.equal(foreground, images[:, 0] > 0)
    masks = silhouettes(foreground, torch.tensor([1, 0]), classes=3)
    assert torch.equal(masks[0, 1], foreground[0]) and torch.equal(masks[1, 0], foreground[1])
    assert not masks[0, 0].any() and not masks[1, 1].any() and not masks[:, 2].any()


def test_only_the_kinds_asked_for_and_only_where_they_can_be_computed() -> None:
    grey = _square()
    only_edges = image_concepts(grey, torch.tensor([0]), ["a", "b"], None, lacking={"edge", "colour"})
    assert only_edges is not None and only_edges.names == ["edge"]  # grey images have no colours
    rgb = grey.expand(1, 3, 32, 32)
    found = image_concepts(rgb, torch.tensor([1]), ["a", "b"], rgb[:, 0] > 0, lacking={"colour", "object"})
    assert found is not None and found.names == [*COLOURS, "a silhouette", "b silhouette"]
    assert found.kinds == ["colour"] * len(COLOURS) + ["object", "object"] and set(found.sources) == {"image"}
    assert image_concepts(grey, torch.tensor([0]), ["a"], None, lacking={"object"}) is None


def test_on_shapes_colours_join_without_changing_the_labels_of_its_own_concepts(data_dir: Path) -> None:
    data = make(data_dir)
    data.setup()
    joined = data.concept_masks(torch.arange(60))
    assert joined is not None and joined.sources is not None
    mine, computed = joined.groups()
    assert {joined.sources[k] for k in mine} == {"shapes"}
    assert {joined.sources[k] for k in computed} == {"image"}
    assert [joined.names[k] for k in computed] == list(COLOURS)  # shapes has edges, parts, objects
    own_kinds = [joined.kinds[k] for k in mine]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU())
    model.named_layers = lambda: [("conv", model[0]), ("relu", model[1])]  # type: ignore[attr-defined]

    def forward(images: torch.Tensor) -> torch.Tensor:
        return model(data.preprocess(images))

    images = data.val.images[:60]
    alone = dissect(model, forward, images, joined.masks[:, mine], 0.02, 0.04)
    together = dissect(model, forward, images, joined.masks, 0.02, 0.04, groups=joined.groups())
    for one, both in zip(alone, together, strict=True):
        assert torch.equal(one.labels[:, 0], both.labels[:, 0])  # the shapes labels as they were
        shares = detector_shares(one.labels, own_kinds)
        with_colours = detector_shares(both.labels, joined.kinds)
        assert {kind: with_colours[kind] for kind in shares} == shares and "colour" in with_colours

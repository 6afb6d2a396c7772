"""The procedural shapes data set: determinism, labels, the shared-part design, caching, concept masks."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from layerscope.data.base import ImageSource, ImageSplits
from layerscope.data.shapes import (
    CLASS_NAMES,
    CLASSES,
    PART_NAMES,
    PARTS,
    ShapesSource,
    _background,
    _Canvas,
    concepts,
    generate,
    render_chunk,
    render_images_with_maps,
    render_with_maps,
)


def test_every_part_is_shared_by_two_classes_and_classes_are_distinct() -> None:
    assert len(CLASSES) >= 8 and len(PART_NAMES) >= 6
    users = {p: {c for c, tpl in CLASSES.items() if any(x[0] == p for x in tpl)} for p in PART_NAMES}
    assert all(len(classes) >= 2 for classes in users.values()), users
    part_sets = [frozenset(x[0] for x in tpl) for tpl in CLASSES.values()]
    assert all(len(s) >= 2 for s in part_sets)  # no class is a single part


def test_generation_is_deterministic_and_prefix_stable() -> None:
    a = generate(1500, 32, seed=3, split="train")
    b = generate(1200, 32, seed=3, split="train")
    assert torch.equal(a.images[:1200], b.images)
    assert torch.equal(a.labels[:1200], b.labels)
    other = generate(200, 32, seed=4, split="train")
    assert not torch.equal(a.images[:200], other.images)
    test = generate(200, 32, seed=3, split="test")
    assert not torch.equal(a.images[:200], test.images)


def test_images_labels_and_parts() -> None:
    images, labels, parts = render_chunk(500, 32, seed=0)
    assert images.shape == (500, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.min() == 0 and labels.max() == len(CLASSES) - 1
    counts = torch.bincount(labels, minlength=len(CLASSES))
    assert counts.max() - counts.min() <= 1  # balanced classes
    for c, template in enumerate(CLASSES.values()):
        own = [PART_NAMES.index(x[0]) for x in template]
        assert parts[labels == c][:, own].all()  # an object's own parts are always labelled
    # Stray parts make part presence more than a function of the class.
    cars = parts[labels == list(CLASSES).index("car")]
    assert cars[:, PART_NAMES.index("ring")].any() and not cars[:, PART_NAMES.index("ring")].all()
    assert images.float().std() > 30  # real content, not a flat colour


def test_objects_are_drawn() -> None:
    # Objects stand near the centre: there the pixels vary far more than smooth background does.
    images, _, _ = render_chunk(50, 32, seed=1)
    centre = images[:, :, 8:24, 8:24].float()
    assert (centre.std(dim=(2, 3)).mean(dim=1) > 10).float().mean() > 0.9


def test_source_caches_on_disk(tmp_path: Path) -> None:
    source = ShapesSource(str(tmp_path), num_train=300, num_test=100, image_size=24)
    first = source.load()
    files = sorted(p.name for p in (tmp_path / "shapes").iterdir() if not p.name.endswith(".lock"))
    assert files == [  # each cache with its checksum, and no temporary files
        "test-100-24px-seed0-v2.pt", "test-100-24px-seed0-v2.pt.sha256",
        "train-300-24px-seed0-v2.pt", "train-300-24px-seed0-v2.pt.sha256",
    ]
    again = source.load()
    assert torch.equal(first.train.images, again.train.images)
    assert first.train.images.shape[1:] == (3, 24, 24)
    capped = source.load(max_train=120)
    assert torch.equal(capped.train.images, first.train.images[:120])


# --- concept masks ------------------------------------------------------------------------------
def _blank_canvas(size: int = 32) -> _Canvas:
    return _Canvas(torch.zeros(1, 3, size, size), 1, torch.arange(1), track=True)


def _square(canvas: _Canvas, x: float, y: float, half: float, code: int, shape: int) -> None:
    """A white square centred on (x, y) (y up, the canvas spanning [-1, 1]), unrotated."""
    one = torch.ones(1)
    white = torch.ones(1, 3)
    canvas.draw(torch.arange(1), PARTS["square"], one * x, one * y, one * half, one * 0, white, code, shape)


def test_part_masks_cover_exactly_the_pixels_where_a_part_was_drawn() -> None:
    # A white square of half-side 0.5 on a black 32-pixel canvas spanning [-1, 1]: pixel centres
    # inside it are columns and rows 8..23.
    canvas = _blank_canvas()
    _square(canvas, 0.0, 0.0, half=0.5, code=1 + PART_NAMES.index("square"), shape=4)
    maps = canvas.part_maps()
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[8:24, 8:24] = True
    assert torch.equal(maps.part("square")[0], inside)
    assert torch.equal(maps.part("square", of="object")[0], inside)
    assert not maps.part("square", of="stray").any() and not maps.part("circle").any()
    assert (canvas.pixels[0, :, inside] > 0.5).all() and (canvas.pixels[0, :, ~inside] < 0.5).all()
    # Edges: the pixels whose right or lower neighbour lies across the square's boundary.
    edges = torch.zeros(32, 32, dtype=torch.bool)
    edges[7, 8:24] = edges[23, 8:24] = edges[8:24, 7] = edges[8:24, 23] = True
    assert torch.equal(maps.edges[0], edges)


def test_a_later_part_covers_an_earlier_one_and_touching_parts_get_an_edge() -> None:
    canvas = _blank_canvas()
    stray_square = 1 + len(PART_NAMES) + PART_NAMES.index("square")
    _square(canvas, 0.0, 0.0, half=0.5, code=stray_square, shape=1)
    _square(canvas, 0.25, 0.25, half=0.25, code=1 + PART_NAMES.index("square"), shape=4)
    maps = canvas.part_maps()
    # The object's square (x, y in [0, 0.5]) covers the stray's upper right quarter: rows 8..15, cols 16..23.
    assert torch.equal(maps.part("square", of="object")[0].nonzero().unique(dim=0)[[0, -1]],
                       torch.tensor([[8, 16], [15, 23]]))
    assert maps.part("square", of="stray")[0].sum() == 16 * 16 - 8 * 8
    assert torch.equal(maps.object()[0], maps.part("square", of="object")[0])
    assert maps.edges[0, 15, 16:24].all() and maps.edges[8:16, 15].all()  # between the two squares


def test_images_rendered_with_masks_are_the_cached_images(tmp_path: Path) -> None:
    source = ShapesSource(str(tmp_path), num_train=1200, num_test=100, image_size=32, seed=2)
    cached = source.load().train
    indices = torch.tensor([1100, 5, 999, 5, 0, 1000, 640])  # two chunks, unordered, one twice
    images, labels, _ = render_images_with_maps(indices, 32, seed=2, split="train")
    assert torch.equal(images, cached.images[indices])
    assert torch.equal(labels, cached.labels[indices])


def test_masks_align_with_rendered_images() -> None:
    n, rows = 1000, torch.arange(0, 1000, 7)
    images, labels, maps = render_with_maps(n, 32, seed=4, rows=rows)
    _, _, parts = render_chunk(n, 32, seed=4)
    # The backgrounds alone, from the same random draws (the labels' permutation comes first).
    g = torch.Generator().manual_seed(4)
    torch.randperm(n, generator=g)
    background = (_background(n, 32, g, rows)[0].clamp(0, 1) * 255).round()
    changed = (images.float() - background).abs().amax(dim=1) > 1  # (N, H, W): a part was drawn here
    drawn = maps.visible > 0
    assert changed[drawn].float().mean() > 0.95  # the masks' pixels show parts
    # Background pixels away from every part (none within one pixel) are the background, but for
    # the faint blur of a rare part too small to cover half of any pixel.
    near_part = F.max_pool2d(drawn[:, None].float(), 3, stride=1, padding=1)[:, 0].bool()
    assert changed[~near_part].float().mean() < 1e-3
    for i, row in enumerate(rows.tolist()):
        template = {PART_NAMES.index(p[0]) for p in CLASSES[CLASS_NAMES[labels[i]]]}
        shown = {k for k, name in enumerate(PART_NAMES) if maps.part(name, of="object")[i].any()}
        strays = {k for k, name in enumerate(PART_NAMES) if maps.part(name, of="stray")[i].any()}
        assert shown <= template and shown  # the object's own parts, and only those
        assert strays <= set(parts[row].nonzero().flatten().tolist())
    assert maps.part("ring", of="stray").any()


def test_concepts_edges_parts_and_objects() -> None:
    _, labels, maps = render_with_maps(1000, 32, seed=1, rows=torch.arange(300))
    masks = concepts(maps, labels)
    assert masks.names == ["edge", *PART_NAMES, *CLASS_NAMES]
    assert masks.kinds == ["edge"] + ["part"] * len(PART_NAMES) + ["object"] * len(CLASS_NAMES)
    assert masks.masks.shape == (300, len(masks.names), 32, 32) and masks.masks.dtype == torch.bool
    objects = masks.masks[:, 1 + len(PART_NAMES):]
    assert torch.equal(objects.any(dim=1), maps.object())  # each image's object, under its own class only
    assert torch.equal(objects.flatten(2).any(2).int().argmax(1), labels)
    # The object is the union of its own parts.
    union = torch.stack([maps.part(name, of="object") for name in PART_NAMES]).any(0)
    assert torch.equal(union, maps.object())
    # Edges lie where the part shown changes, and cover a thin share of the image.
    visible = maps.visible
    change = torch.zeros_like(maps.edges)
    change[:, :, :-1] |= visible[:, :, :-1] != visible[:, :, 1:]
    change[:, :-1] |= visible[:, :-1] != visible[:, 1:]
    assert maps.edges[change].all()
    assert 0.03 < maps.edges.float().mean() < 0.2


def test_source_gives_concept_masks_for_any_indices(tmp_path: Path) -> None:
    source = ShapesSource(str(tmp_path), num_train=300, num_test=100, image_size=24)
    masks = source.concept_masks("test", torch.tensor([3, 1, 2]))
    assert masks.masks.shape == (3, 18, 24, 24)
    again = source.concept_masks("test", torch.tensor([1]))
    assert torch.equal(again.masks[0], masks.masks[1])


class _ImagesOnly(ImageSource):
    def load(self, max_train: int | None = None) -> ImageSplits:
        raise AssertionError("not called: the data module has already loaded")


def test_data_module_gives_the_masks_of_its_validation_images(data_dir: Path) -> None:
    from tests.data.test_datamodule import make

    module = make(data_dir)
    module.setup()
    masks = module.concept_masks(torch.arange(60))
    assert masks is not None and masks.masks.shape == (60, 18 + 11, 32, 32)  # its own, then colours
    own = masks.groups()[0]
    assert own == list(range(18)) and masks.kinds[18:] == ["colour"] * 11
    first, last = masks.kinds.index("object"), own[-1] + 1
    objects = masks.masks[:, first:last].flatten(2).any(2)
    assert torch.equal(objects.int().argmax(1), module.val.labels[:60])  # each image's own object
    module.source = _ImagesOnly()  # a source that declares only load(): only the computed concepts
    computed = module.concept_masks(torch.arange(3))
    assert computed is not None and computed.kinds == ["edge"] + ["colour"] * 11

"""The procedural shapes data set: determinism, labels, the shared-part design, caching."""

from __future__ import annotations

from pathlib import Path

import torch

from layerscope.data.shapes import CLASSES, PART_NAMES, ShapesSource, generate, render_chunk


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
    assert files == ["test-100-24px-seed0-v2.pt", "train-300-24px-seed0-v2.pt"]  # no temporary files
    again = source.load()
    assert torch.equal(first.train.images, again.train.images)
    assert first.train.images.shape[1:] == (3, 24, 24)
    capped = source.load(max_train=120)
    assert torch.equal(capped.train.images, first.train.images[:120])

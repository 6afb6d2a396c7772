"""data=imagefolder streamed from disk: the same batches as in memory, bounded memory, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from layerscope.data.datamodule import ImageDataModule
from layerscope.data.image_files import FileBatches, ImageFiles, decode_all, load_image
from layerscope.data.imagefolder import ImageFolderSource
from layerscope.data.photo_folder import CLASSES, write_photo_folder
from layerscope.errors import UserError

SIZE = 24
PER_CLASS = 12  # 60 photos


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    write_photo_folder(root, PER_CLASS, min_side=40, max_side=70)
    return root


def data_module(root: Path, cache: str, **settings: object) -> ImageDataModule:
    source = ImageFolderSource(str(root), image_size=SIZE, cache=cache,
                               memory_budget_gb=settings.pop("memory_budget_gb", None))
    module = ImageDataModule(source, "imagefolder", 3, len(CLASSES), SIZE, batch_size=8, eval_batch_size=16,
                             val_size=10, test_size=10, **settings)
    module.setup("fit")
    return module


def batches(loader: torch.utils.data.DataLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images.clone(), labels.clone()) for images, labels in loader]


def test_streamed_and_in_memory_give_the_same_batches(photos: Path) -> None:
    memory = data_module(photos, "memory", photo_augment=False)
    disk = data_module(photos, "disk", photo_augment=False, num_workers=0)
    assert not memory.streamed and isinstance(memory.train.images, torch.Tensor)
    assert disk.streamed and isinstance(disk.train.images, ImageFiles)
    assert memory.mean == pytest.approx(disk.mean) and memory.std == pytest.approx(disk.std)
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        kept, streamed = batches(getattr(memory, name)()), batches(getattr(disk, name)())
        assert len(kept) == len(streamed) > 0
        for (a, la), (b, lb) in zip(kept, streamed, strict=True):
            assert torch.equal(a, b) and torch.equal(la, lb)
    # The views read the validation images by index: the same pixels either way.
    assert torch.equal(memory.val.images[torch.tensor([3, 0])], disk.val.images[torch.tensor([3, 0])])


def test_the_memory_decision_comes_back_from_load_and_leaves_the_source_as_it_was(photos: Path) -> None:
    decoded_gb = 5 * PER_CLASS * 3 * SIZE * SIZE / 2**30
    for cache, budget, expected in (("memory", None, True), ("disk", None, False),
                                    ("auto", decoded_gb * 1.1, True), ("auto", decoded_gb * 0.9, False)):
        source = ImageFolderSource(str(photos), image_size=SIZE, cache=cache, memory_budget_gb=budget)
        before = dict(vars(source))
        assert source.load().in_memory is expected
        assert vars(source) == before


def test_worker_processes_decode_the_same_batches(photos: Path) -> None:
    one = batches(data_module(photos, "disk", photo_augment=False, num_workers=0).val_dataloader())
    two = batches(data_module(photos, "disk", photo_augment=False, num_workers=2).val_dataloader())
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(one, two, strict=True))


def test_a_folder_larger_than_the_budget_streams(photos: Path) -> None:
    decoded_gb = 5 * PER_CLASS * 3 * SIZE * SIZE / 2**30
    assert not data_module(photos, "auto", memory_budget_gb=decoded_gb * 1.1).streamed
    streamed = data_module(photos, "auto", memory_budget_gb=decoded_gb * 0.9, num_workers="auto")
    assert streamed.streamed
    # Nothing but paths and labels is held: no image tensor in any split.
    for split in (streamed.train, streamed.val, streamed.test):
        assert isinstance(split.images, ImageFiles)
    assert streamed._workers() >= 1 and data_module(photos, "memory", num_workers="auto")._workers() == 0


def test_streamed_training_images_are_photo_crops_and_evaluation_resizes(photos: Path) -> None:
    disk = data_module(photos, "disk", resize_size=SIZE + 8, num_workers=0)
    assert disk.train.images.augment and not disk.val.images.augment
    torch.manual_seed(0)
    first = disk.train.images[torch.arange(6)]
    second = disk.train.images[torch.arange(6)]
    assert first.shape == (6, 3, SIZE, SIZE) and not torch.equal(first, second)
    path = Path(disk.val.images.paths[0])
    assert torch.equal(disk.val.images[0], load_image(path, SIZE, 3, resize_size=SIZE + 8))
    assert disk.info["resize_size"] == SIZE + 8
    with pytest.raises(UserError, match=r"photo_augment=true.*cache=disk"):
        data_module(photos, "memory", photo_augment=True)


def test_a_bad_file_in_a_streamed_folder_costs_one_image_not_the_epoch(
    photos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "photos"
    write_photo_folder(root, PER_CLASS, min_side=40, max_side=70)
    good = (root / "star" / "000000.jpg").read_bytes()
    (root / "star" / "000000.jpg").write_bytes(good[: len(good) // 3])  # a header, then the data stops
    (root / "circle" / "notes.txt").write_text("not a photo")  # found when the folder is listed
    disk = data_module(root, "disk", photo_augment=False, num_workers=0)
    assert "notes.txt" in caplog.text
    splits = (disk.train, disk.val, disk.test)
    assert sum(len(split) for split in splits) == 5 * PER_CLASS  # the text file was never listed
    decoded = [FileBatches(split.images, split.labels)[torch.arange(len(split))] for split in splits]
    assert sum(len(labels) for _, labels in decoded) == 5 * PER_CLASS - 1  # the truncated one is left out
    assert all(len(images) == len(labels) for images, labels in decoded)
    assert "000000.jpg" in caplog.text
    with pytest.raises(UserError, match=r"notes.txt.*on_bad_file=skip"):
        ImageFolderSource(str(root), image_size=SIZE, cache="disk", on_bad_file="fail").load()


def test_decoding_a_folder_into_memory_in_worker_processes_keeps_the_order(photos: Path) -> None:
    files = ImageFolderSource(str(photos), image_size=SIZE).load().train.images
    alone, kept_alone, _ = decode_all(files, workers=0)
    shared, kept_shared, _ = decode_all(files, workers=2, chunk=7)
    assert torch.equal(alone, shared) and kept_alone == kept_shared == list(range(len(files)))

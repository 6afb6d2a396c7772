"""The data module: splits, batches, augmentation on transfer, sharding, validation of settings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from layerscope.data.datamodule import ImageDataModule, ShuffledBatches
from layerscope.data.shapes import ShapesSource
from layerscope.errors import UserError


def make(data_dir: Path, **overrides: object) -> ImageDataModule:
    settings: dict = dict(
        source=ShapesSource(str(data_dir), num_train=1200, num_test=300), name="shapes",
        in_channels=3, num_classes=10, image_size=32, batch_size=64, val_size=200,
    )
    settings.update(overrides)
    return ImageDataModule(**settings)


def test_splits_are_disjoint_fixed_and_capped(data_dir: Path) -> None:
    dm = make(data_dir)
    dm.setup()
    assert (len(dm.train), len(dm.val), len(dm.test)) == (1000, 200, 300)
    again = make(data_dir, seed=7)
    again.setup()
    assert torch.equal(dm.val.images, again.val.images)  # the split does not depend on the seed
    capped = make(data_dir, train_size=300)
    capped.setup()
    assert len(capped.train) == 300
    assert dm.info["classes"][0] == "face" and len(dm.info["mean"]) == 3


def test_batches_are_uint8_until_transfer(data_dir: Path) -> None:
    dm = make(data_dir)
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (64, 3, 32, 32)
    assert labels.dtype == torch.int64
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    assert x.dtype == torch.float32 and torch.equal(y, labels)
    assert abs(x.mean().item()) < 0.3
    assert len(dm.train_dataloader()) == 1000 // 64  # the last partial batch is dropped
    assert sum(len(b[1]) for b in dm.val_dataloader()) == 200  # evaluation sees every image


def test_resizes_and_converts_to_the_configured_input(data_dir: Path) -> None:
    dm = make(data_dir, in_channels=1, image_size=20)
    dm.setup()
    assert dm.train.images.shape[1:] == (1, 20, 20)


def test_shuffled_batches_cover_each_rank_once_and_change_per_epoch() -> None:
    shards = [list(ShuffledBatches(10, 3, True, False, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    seen = torch.cat([b for shard in shards for b in shard])
    assert sorted(seen.tolist()) == list(range(10))
    sampler = ShuffledBatches(10, 10, True, False, seed=1)
    first = next(iter(sampler))
    sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(sampler)))
    assert len(ShuffledBatches(10, 3, True, True, world_size=2)) == 1


@pytest.mark.parametrize(
    ("key", "value"),
    [("batch_size", 0), ("batch_size", -3), ("val_size", 0), ("num_workers", -1), ("train_size", 0)],
)
def test_bad_settings_name_the_key(data_dir: Path, key: str, value: int) -> None:
    with pytest.raises(UserError, match=f"data.{key}={value}"):
        make(data_dir, **{key: value})


def test_wrong_class_count_is_a_user_error(data_dir: Path) -> None:
    with pytest.raises(UserError, match=r"data\.num_classes=5"):
        make(data_dir, num_classes=5).setup()


def test_val_larger_than_data_is_a_user_error(data_dir: Path) -> None:
    with pytest.raises(UserError, match=r"data\.val_size"):
        make(data_dir, val_size=5000).setup()


def test_training_shares_are_equal_across_processes() -> None:
    """A process with a batch more would wait in its last all-reduce for ever: shares are evened out."""

    ranks = [ShuffledBatches(511, 64, shuffle=True, drop_last=True, seed=3, rank=r, world_size=2)
             for r in (0, 1)]
    batches = [list(sampler) for sampler in ranks]
    assert [len(b) for b in batches] == [len(s) for s in ranks] == [3, 3]
    seen = torch.cat([torch.cat(b) for b in batches])
    assert len(seen) == len(set(seen.tolist())) == 2 * 3 * 64  # disjoint
    evaluation = [ShuffledBatches(511, 64, shuffle=False, drop_last=False, rank=r, world_size=2)
                  for r in (0, 1)]
    assert sum(len(torch.cat(list(s))) for s in evaluation) == 511  # evaluation keeps every image


def test_batches_are_pinned_on_their_way_to_a_gpu_only(data_dir: Path) -> None:
    dm = make(data_dir)
    dm.setup()
    assert not dm.train_dataloader().pin_memory  # no trainer: a CPU run
    for device, pinned in (("cpu", False), ("cuda", True)):
        dm.trainer = SimpleNamespace(global_rank=0, world_size=1, strategy=SimpleNamespace(
            root_device=torch.device(device)))
        assert dm.train_dataloader().pin_memory is pinned and dm.val_dataloader().pin_memory is pinned

"""One LightningDataModule for every source: uint8 tensors in memory, augmented a batch at a time,
or image files decoded (and, for photos, augmented) in the loader's worker processes."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from layerscope.data.augment import channel_stats, match_shape, normalise, random_crop_flip
from layerscope.data.base import ConceptMasks, ImageSource, ImageSplits, LabelledImages
from layerscope.data.concepts import COMPUTED_KINDS, image_concepts
from layerscope.data.image_files import FileBatches, ImageFiles, decode_all
from layerscope.errors import UserError, check_int
from layerscope.registry import DATA


class ShuffledBatches(Sampler[torch.Tensor]):
    """Yields index tensors, one per batch, so a batch is a single tensor gather.

    Shuffles with ``seed + epoch`` and gives each of ``world_size`` processes its own share, so
    distributed runs need no DistributedSampler. With ``drop_last`` (training) the shares are
    equal: the last ``size % world_size`` images of each epoch's order are left out, as
    DistributedSampler does, because a process with one batch fewer would leave the others
    waiting in the gradient all-reduce of their last step for ever.
    """

    def __init__(
        self, size: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int = 0,
        rank: int = 0, world_size: int = 1,
    ) -> None:
        self.size, self.batch_size = size, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.skip_batches = 0  # batches of this epoch already trained on: set when resuming part-way

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g)
        else:
            order = torch.arange(self.size)
        if self.drop_last:
            order = order[: self.size - self.size % self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[torch.Tensor]:
        skip, self.skip_batches = self.skip_batches, 0
        yield from itertools.islice(self._batches(self._indices()), skip, None)

    def _batches(self, order: torch.Tensor) -> Iterator[torch.Tensor]:
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        for start in range(0, stop, self.batch_size):
            yield order[start : start + self.batch_size]

    def __len__(self) -> int:
        size = self.size - self.size % self.world_size if self.drop_last else self.size
        share = len(range(self.rank, size, self.world_size))
        full, rest = divmod(share, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1


class ResumableLoader(DataLoader):
    """A DataLoader whose position in the epoch goes into checkpoints, so a resume continues there.

    Lightning saves ``state_dict()`` with every checkpoint and calls ``load_state_dict()`` when it
    resumes. Our loaders have a length, so Lightning fetches without looking ahead: the batches
    handed out so far are exactly the batches trained on.
    """

    sampler: ShuffledBatches

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handed_out = 0
        self._resume: dict[str, int] | None = None

    def __iter__(self) -> Iterator[Any]:
        # A generator: this runs at the first batch, after Lightning has called set_epoch.
        resume, self._resume = self._resume, None
        skip = resume["batches"] if resume and resume["epoch"] == self.sampler.epoch else 0
        self.sampler.skip_batches = skip
        self._handed_out = skip
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches": self._handed_out}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = dict(state)


def precision_input(trainer: Any, images: torch.Tensor) -> torch.Tensor:
    """Normalised images in the dtype the trainer's precision feeds the model.

    Lightning converts a batch for ``bf16-true`` / ``16-true`` before it reaches the data module,
    when it is still uint8 and so left alone; the float batch that preprocessing makes must be
    converted here, or a half-precision model receives fp32. Mixed and fp32 precisions leave it.
    """
    plugin = getattr(trainer, "precision_plugin", None)
    return images if plugin is None else plugin.convert_input(images)


@DATA.register()  # every data option builds it around its source
class ImageDataModule(L.LightningDataModule):
    """Holds train/val/test as uint8 tensors; crops, flips and normalises whole batches.

    Augmentation runs in ``on_after_batch_transfer``, so on a GPU it runs on the GPU.
    """

    def __init__(
        self,
        source: ImageSource,
        name: str,
        in_channels: int,
        num_classes: int,
        image_size: int,
        root: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        train_size: int | None = None,
        val_size: int = 5000,
        test_size: int = 10000,
        split_seed: int = 0,
        seed: int = 0,
        num_workers: int | str = 0,
        crop_padding: int = 4,
        hflip: bool = True,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        resize_size: int | None = None,
        photo_augment: bool | str = "auto",
    ) -> None:
        super().__init__()
        self.source = source
        self.name = name
        self.root = root  # data.root: the one key users set; the source config interpolates it
        self.in_channels, self.num_classes, self.image_size = in_channels, num_classes, image_size
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.train_size, self.val_size, self.test_size = train_size, val_size, test_size
        self.split_seed, self.seed = split_seed, seed
        self.num_workers = num_workers
        self.crop_padding, self.hflip = crop_padding, hflip
        self.mean_config, self.std_config = mean, std
        self.resize_size, self.photo_augment = resize_size, photo_augment
        self._check_settings()
        self._forget_data()

    def _check_settings(self) -> None:
        """Settings a user can get wrong, each refused in one line that names the key."""
        check_int("data.batch_size", self.batch_size)
        check_int("data.eval_batch_size", self.eval_batch_size)
        check_int("data.train_size", self.train_size, allow_none=True)
        check_int("data.val_size", self.val_size)
        check_int("data.test_size", self.test_size)
        if self.num_workers != "auto":
            check_int("data.num_workers", self.num_workers, minimum=0)
        if self.photo_augment not in (True, False, "auto"):
            raise UserError(f"data.photo_augment={self.photo_augment} must be true, false or auto")
        check_int("data.crop_padding", self.crop_padding, minimum=0)
        check_int("data.image_size", self.image_size, minimum=4)
        if self.in_channels not in (1, 3):
            raise UserError(f"data.in_channels={self.in_channels} must be 1 (grey) or 3 (RGB)")
        if self.resize_size is not None and self.resize_size < self.image_size:
            raise UserError(f"data.resize_size={self.resize_size} must be at least "
                            f"data.image_size={self.image_size}")

    def _forget_data(self) -> None:
        """The state before ``setup``: nothing loaded, no loader, no position in an epoch."""
        self.classes: list[str] = []
        self.part_names: list[str] = []
        self.train: LabelledImages | None = None
        self.val: LabelledImages | None = None
        self.test: LabelledImages | None = None
        self.mean: list[float] = []
        self.std: list[float] = []
        self._files_in_memory = True  # the source's decision for image files, made when it loads
        self._train_loader: ResumableLoader | None = None
        self._train_position: dict[str, int] | None = None  # from a checkpoint, until the loader exists
        self._val_origin: tuple[str, torch.Tensor] | None = None  # the source split and indices of val

    # --- loading -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        max_train = None if self.train_size is None else self.train_size + self.val_size
        splits = self.source.load(max_train=max_train)
        if len(splits.classes) != self.num_classes:
            raise UserError(
                f"data.num_classes={self.num_classes} but the data has {len(splits.classes)} "
                f"classes ({', '.join(splits.classes[:12])})"
            )
        self.classes, self.part_names = list(splits.classes), list(splits.part_names)
        self._files_in_memory = splits.in_memory
        self.train, self.val, self.test = self._split(splits)
        if self.mean_config is None or self.std_config is None:
            self.mean, self.std = channel_stats(self._stats_images())
        else:
            self.mean, self.std = list(self.mean_config), list(self.std_config)
        self._mean_t = torch.tensor(self.mean)
        self._std_t = torch.tensor(self.std)
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def streamed(self) -> bool:
        """Whether the splits stay image files, decoded batch by batch (see ``data.source.cache``)."""
        return isinstance(self.train.images if self.train is not None else None, ImageFiles)

    def _stats_images(self) -> torch.Tensor:
        """The training images the normalisation is measured on: all of them in memory; 2,000 of
        them, the same every run, when they stream (plenty for a per-channel mean)."""
        assert self.train is not None
        images = self.train.images
        if isinstance(images, torch.Tensor):
            return images
        plain = images.for_training(augment=False)
        count = min(2000, len(plain))
        chosen = torch.randperm(len(plain), generator=torch.Generator().manual_seed(0))[:count]
        return decode_all(plain.select(chosen), workers=self._workers())[0]

    def _fit(self, part: LabelledImages, split: str) -> LabelledImages:
        """A split as it is used: files decoded into memory where the source keeps it there, the
        training files decoding as training does, tensors converted to the configured shape."""
        if isinstance(part.images, ImageFiles):
            files = (part.images.for_training(self._photo_augment()) if split == "train"
                     else part.images.for_evaluation(self.resize_size))
            part = LabelledImages(files, part.labels, part.parts)
            if self._files_in_memory:
                part = self.source.materialise(part, split)
        if isinstance(part.images, ImageFiles):
            return LabelledImages(part.images, part.labels.long(), part.parts)
        images = match_shape(part.images, self.in_channels, self.image_size)
        return LabelledImages(images, part.labels.long(), part.parts)

    def _photo_augment(self) -> bool:
        """Photo augmentation (random resized crops of the whole photo) where training images stream:
        ``auto`` turns it on there; images decoded into memory are already cropped to the input."""
        streams = not self._files_in_memory
        if self.photo_augment is True and not streams:
            raise UserError("data.photo_augment=true crops whole photos as they stream from disk: "
                            "pass data.source.cache=disk too, or data.photo_augment=false")
        return streams if self.photo_augment == "auto" else bool(self.photo_augment)

    def _split(self, splits: ImageSplits) -> tuple[LabelledImages, LabelledImages, LabelledImages]:
        """Carve val (and test, if the source has none) from train with a fixed seed."""
        pool = splits.train
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(self.split_seed))
        carve = [n for n, given in ((self.val_size, splits.val), (self.test_size, splits.test))
                 if given is None]
        if sum(carve) >= len(pool):
            raise UserError(
                f"the training data has {len(pool)} images, too few to hold out "
                f"data.val_size={self.val_size} (and a test split): lower data.val_size"
            )
        taken = 0
        val, test = splits.val, splits.test
        self._val_origin = ("val", torch.arange(len(val))) if val is not None else None
        if val is None:
            val, taken = pool.subset(order[: self.val_size]), self.val_size
            self._val_origin = ("train", order[: self.val_size])
        if test is None:
            test = pool.subset(order[taken : taken + self.test_size])
            taken += self.test_size
        rest = order[taken:]
        if self.train_size is not None:
            rest = rest[: self.train_size]
        return self._fit(pool.subset(rest), "train"), self._fit(val, "val"), self._fit(test, "test")

    @property
    def info(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild the preprocessing: plain types only."""
        if self.train is None:
            raise RuntimeError("call setup() before asking for the data info")
        return {
            "name": self.name,
            "classes": self.classes,
            "part_names": self.part_names,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "resize_size": self.resize_size or self.image_size,
            "mean": self.mean,
            "std": self.std,
        }

    def concept_masks(self, indices: torch.Tensor) -> ConceptMasks | None:
        """Pixel masks of concepts for validation images ``indices``: the source's own (``shapes``:
        edges, parts, objects), then those computed from the pixels (``data.concepts``: edges, colours,
        silhouettes) of the kinds the source's own lack.

        The source's own are left out where the images were resized to fit; None before ``setup``.
        """
        if self._val_origin is None or self.val is None:
            return None
        split, origin = self._val_origin
        images = self.val.images[indices]
        # Rows of the split as the source listed it: only while none was dropped as unreadable.
        own = (self.source.concept_masks(split, origin[indices], self.resize_size)
               if len(origin) == len(self.val) else None)
        if own is not None and own.masks.shape[-2:] != images.shape[-2:]:
            own = None
        lacking = set(COMPUTED_KINDS) - set(own.kinds if own is not None else [])
        computed = image_concepts(
            images, self.val.labels[indices], self.classes, self.source.foreground(images), lacking
        )
        return computed if own is None else own.joined(computed, source=self.name)

    # --- batches -----------------------------------------------------------------------------
    def _loader(self, part: LabelledImages | None, train: bool) -> ResumableLoader:
        if part is None:
            raise RuntimeError("call setup() before asking for a data loader")
        rank = self.trainer.global_rank if self.trainer is not None else 0
        world = self.trainer.world_size if self.trainer is not None else 1
        on_gpu = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        sampler = ShuffledBatches(
            len(part), self.batch_size if train else self.eval_batch_size, shuffle=train,
            drop_last=train and len(part) // world >= self.batch_size,
            seed=self.seed, rank=rank, world_size=world,
        )
        workers = self._workers()
        return ResumableLoader(
            FileBatches(part.images, part.labels), sampler=sampler, batch_size=None,
            num_workers=workers, persistent_workers=workers > 0,
            # Batches in page-locked memory on the way to a GPU: the copy can overlap the last step.
            pin_memory=on_gpu,
            # Each new iterator draws a worker seed from this generator, not from torch's global
            # one, which augmentation uses: so a resumed run draws exactly the same numbers.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _workers(self) -> int:
        """``auto``: no worker processes for tensors in memory (a gather needs none); for streamed
        files as many as there are cores, up to 4, so decoding overlaps the training step."""
        if self.num_workers != "auto":
            return int(self.num_workers)
        return min(4, os.cpu_count() or 1) if self.streamed else 0

    def train_dataloader(self) -> DataLoader:
        self._train_loader = self._loader(self.train, train=True)
        if self._train_position is not None:
            self._train_loader.load_state_dict(self._train_position)
            self._train_position = None
        return self._train_loader

    # Lightning keeps a data module's state in checkpoints. The position lives here rather than
    # in the loader's own state because Lightning builds the training loader before it restores
    # a checkpoint whenever the schedule asks for the number of steps (OneCycle does).
    def state_dict(self) -> dict[str, Any]:
        return {"train_position": self._train_loader.state_dict()} if self._train_loader else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        position = state.get("train_position")
        if position is not None and self._train_loader is not None:
            self._train_loader.load_state_dict(position)
        else:
            self._train_position = position

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, train=False)

    @property
    def _augmented_in_loader(self) -> bool:
        """Whether training images come augmented from the loader (photo crops of streamed files)."""
        return self.streamed and self.train.images.augment

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        if self.trainer is not None and self.trainer.training and not self._augmented_in_loader:
            images = random_crop_flip(images, self.crop_padding, self.hflip)
        return precision_input(self.trainer, self.preprocess(images)), labels

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> the normalised float batch the model sees."""
        # Moved to each device once, not with every batch (a host-to-GPU copy per step otherwise).
        constants = self._constants.get(images.device)
        if constants is None:
            constants = self._constants[images.device] = (self._mean_t.to(images.device),
                                                          self._std_t.to(images.device))
        return normalise(images, *constants)

"""The LightningModule: cross-entropy loss, backprop through any model, accuracy, optimizer wiring."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from layerscope import ood
from layerscope.checkpoint import Checkpoint, stamp
from layerscope.data.augment import shift
from layerscope.errors import check_int
from layerscope.models import build_model

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def weight_decay_groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Optimizer parameter groups: weight decay on connection weights, none on the 1-D parameters.

    Decaying biases and BatchNorm scales only hurts accuracy. A model with pretrained layers
    (``backbone_lr_scale`` below 1) gets those in groups of their own, which carry an ``lr_scale``
    that :func:`scale_learning_rates` applies: the new head learns at the full rate, the
    pretrained layers more gently. Frozen parameters are left out.
    """
    scale = getattr(model, "backbone_lr_scale", 1.0)
    backbone = {id(p) for p in model.backbone_parameters()} if scale != 1.0 else set()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = []
    for in_backbone in (False, True):
        part = [p for p in params if (id(p) in backbone) == in_backbone]
        extra = {"lr_scale": scale} if in_backbone else {}
        groups += [{"params": [p for p in part if p.ndim > 1], **extra},
                   {"params": [p for p in part if p.ndim <= 1], "weight_decay": 0.0, **extra}]
    # The first group is the one whose lr train/lr reports: keep it even when empty.
    return groups[:2] + [group for group in groups[2:] if group["params"]]


def scale_learning_rates(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Each group's lr times its ``lr_scale``, before a schedule reads the groups' rates."""
    for group in optimizer.param_groups:
        group["lr"] *= group.pop("lr_scale", 1.0)
    return optimizer


def gather_rows(module: L.LightningModule, rows: torch.Tensor) -> torch.Tensor:
    """Every process's ``rows`` (N_rank, D), concatenated in rank order; ``rows`` alone on one process.

    The processes' counts may differ (the last validation batches are not padded), while
    ``all_gather`` needs one shape: each pads to the largest count, and the padding is cut off.
    """
    if module.trainer.world_size == 1:
        return rows
    counts = module.all_gather(torch.tensor(len(rows), device=rows.device)).tolist()
    padded = rows.new_zeros((max(counts), *rows.shape[1:]))
    padded[: len(rows)] = rows
    gathered = module.all_gather(padded)  # (world_size, max count, D)
    return torch.cat([gathered[rank, :count] for rank, count in enumerate(counts)])


class ImageClassifier(L.LightningModule):
    """Wraps a model from ``layerscope.models`` for training.

    ``model_config`` and ``data_info`` are saved in every checkpoint (plain types only), so a
    checkpoint alone rebuilds the model and its preprocessing (``layerscope.checkpoint``).
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        data_info: dict[str, Any],
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        label_smoothing: float = 0.0,
        channels_last: bool = True,
        compile: bool = False,
        test_time_flip: bool = False,
        test_time_shift: int = 0,
        train_image_sizes: list[int] | None = None,
    ) -> None:
        super().__init__()
        # Kept for checkpoints; the HPARAMS dashboard gets the run's settings with its final metrics
        # at the end of training instead (see apps/train.py).
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.model = build_model(model_config)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_smoothing = label_smoothing
        self.channels_last = channels_last
        self.compile = compile
        self.test_time_flip = test_time_flip
        check_int("module.test_time_shift", test_time_shift, minimum=0)
        self.test_time_shift = test_time_shift
        self.train_image_sizes = list(train_image_sizes) if train_image_sizes else None
        for size in self.train_image_sizes or []:
            check_int("module.train_image_sizes[]", size, minimum=8)
        # What a black pixel becomes after normalisation: the border that shifted test images get.
        # A buffer, so it moves to the model's device once; not persistent, so checkpoints keep
        # their keys.
        mean, std = torch.tensor(data_info["mean"]), torch.tensor(data_info["std"])
        self.register_buffer("_black", -mean / std, persistent=False)
        # With compile=True, training steps go through a torch.compile'd forward. Validation, test
        # and the insight views stay eager, so their hooks see every layer.
        self._compiled_forward: Callable[[torch.Tensor], torch.Tensor] | None = None
        num_classes = len(data_info["classes"])
        # validate_args=False: the labels come from our own data module, and checking their range
        # on every update reads a value back from the GPU at every step.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        # This validation pass's logits and the features entering the linear head (ReAct clips
        # them), and what the last full pass calibrated from them (layerscope.ood); every
        # checkpoint stores the latter.
        self._val_logits: list[torch.Tensor] = []
        self._val_features: list[torch.Tensor] = []
        self.ood_calibration: ood.Calibration | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> ImageClassifier:
        """The module as the training run tested it: its trusted model, weights and test-time views."""
        module = cls(checkpoint.trusted_model_config(), checkpoint.data_info, **checkpoint.test_views)
        checkpoint.load_weights(module)
        return module

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stamp(checkpoint)
        if self.ood_calibration is not None:
            checkpoint[ood.CHECKPOINT_KEY] = self.ood_calibration.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.ood_calibration = ood.Calibration.from_dict(checkpoint.get(ood.CHECKPOINT_KEY))

    def setup(self, stage: str) -> None:
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.compile and stage == "fit":
            # The bound forward, not the module: a compiled module would register itself as a
            # second copy of the model in checkpoints.
            self._compiled_forward = torch.compile(self.model.forward)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the memory layout the model's weights use."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self._layout(x))

    def train_image_size(self, epoch: int) -> int | None:
        """The side length epoch ``epoch`` (0-based) trains at: ``train_image_sizes[epoch]``, the last
        entry for every epoch after the list; None (the images as they come) without a list."""
        if not self.train_image_sizes:
            return None
        return self.train_image_sizes[min(epoch, len(self.train_image_sizes) - 1)]

    def _resized_for_training(self, images: torch.Tensor) -> torch.Tensor:
        """Progressive resizing (fast.ai's DAWNBench entry, Howard 2018): early epochs see the batch
        shrunk, at a fraction of the cost per image; the pooled head takes any size. Validation,
        test and the insight views always see full-size images."""
        size = self.train_image_size(self.current_epoch)
        if size is None or size >= images.shape[-1]:
            return images
        # The antialiased kernel has no bf16 implementation on the CPU (bf16-true hands bf16 batches
        # in): shrink in fp32 and hand the batch back in its own dtype.
        shrunk = F.interpolate(
            images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        return shrunk.to(images.dtype)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        images = self._resized_for_training(images)
        logits = (self._compiled_forward or self.model)(self._layout(images))
        # The loss says how wrong the predictions are; Lightning backpropagates it and steps the
        # optimizer (gradient descent on every weight and bias).
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self.train_acc(logits, labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        # As a CPU tensor: Lightning would turn a Python float into a tensor on the model's device,
        # a host-to-GPU copy that waits for the queued work at every step.
        lr = torch.tensor(self.optimizers().param_groups[0]["lr"])
        self.log("train/lr", lr, on_step=True, on_epoch=False)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        images, labels = batch
        # Test-time augmentation on the test split only: validation passes feed the insight views,
        # which expect one forward pass per batch.
        logits = self._validation_logits(images) if stage == "val" else self._test_time_logits(images)
        loss = F.cross_entropy(logits, labels)
        metric = self.val_acc if stage == "val" else self.test_acc
        metric(logits, labels)
        # Averaged over every process under DDP (the accuracy metric syncs itself).
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", sync_dist=True)
        self.log(f"{stage}/acc", metric, on_epoch=True, prog_bar=stage == "val")
        return logits  # handed to callbacks (insight's mistakes view); Lightning keeps nothing

    def _test_time_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits averaged over the test-time views: the image, its mirror image if
        ``test_time_flip``, and, if ``test_time_shift``, each of those moved by that many pixels
        down-right and up-left, which together weigh as much as the unshifted views (the views
        of Keller Jordan's airbench)."""
        views = [images, images.flip(-1)] if self.test_time_flip else [images]
        logits = torch.stack([self(view) for view in views]).mean(0)
        if self.test_time_shift:
            s = self.test_time_shift
            moved = [shift(view, d, d, self._black) for view in views for d in (s, -s)]
            logits = (logits + torch.stack([self(view) for view in moved]).mean(0)) / 2
        return logits

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "val")

    def _validation_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The logits of a validation batch, kept with the features entering the linear head."""
        with ood.head_inputs(ood.linear_head(self.model)) as features:
            logits = self(images)
        self._val_logits.append(logits.detach().float())
        self._val_features.extend(features)
        return logits

    def on_validation_epoch_start(self) -> None:
        self._val_logits, self._val_features = [], []

    def on_validation_epoch_end(self) -> None:
        """Calibrate the out-of-distribution score on this pass's validation images (every
        process's, under DDP); the sanity check's few batches calibrate nothing."""
        logits = gather_rows(self, torch.cat(self._val_logits)) if self._val_logits else None
        features = gather_rows(self, torch.cat(self._val_features)) if self._val_features else None
        self._val_logits, self._val_features = [], []
        if logits is None or not len(logits) or self.trainer.sanity_checking:
            return
        head = ood.linear_head(self.model)
        with torch.autocast(logits.device.type, enabled=False):  # the head in fp32, as predictions run it
            self.ood_calibration = ood.calibrate(logits, features, head, step=self.global_step)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "test")

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError("ImageClassifier needs an optimizer factory to train")
        optimizer = scale_learning_rates(self.optimizer_factory(weight_decay_groups(self.model)))
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

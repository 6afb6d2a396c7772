"""What the insight views may read, in one place: the model under inspection and the data module's share.

Views never reach into ``trainer.datamodule`` or ``pl_module`` by attribute name: they call
:func:`insight_data` and :func:`inspected_model`, which check that what they hand out is
there, and fail in one line naming what is missing. A view that needs more from the data
adds a member to :class:`InsightData`, typed ``... | None`` where only some data modules can give
it (as the concept masks), so that every data module can still answer.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

import lightning as L
import torch
from torch import nn

from layerscope.data.base import ConceptMasks, LabelledImages
from layerscope.data.datamodule import precision_input
from layerscope.errors import UserError
from layerscope.insight.capture import LayerAnatomy, trace_anatomy


@runtime_checkable
class InsightData(Protocol):
    """The part of a data module the views read (``layerscope.data.datamodule.ImageDataModule`` has it)."""

    @property
    def val(self) -> LabelledImages:
        """The validation split: uint8 images, labels and (where the data set has them) part labels."""
        ...

    @property
    def classes(self) -> list[str]:
        """Class names, in label order."""
        ...

    @property
    def info(self) -> dict[str, Any]:
        """Name, classes, input channels and size, normalisation: what a checkpoint stores."""
        ...

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """A uint8 batch as the model sees it: float, normalised."""
        ...

    def concept_masks(self, indices: torch.Tensor) -> ConceptMasks | None:
        """Pixel masks of concepts for the validation images ``indices``; None where the data has none."""
        ...


def _members(protocol: type) -> list[str]:
    public = (name for name in vars(protocol) if not name.startswith("_"))
    return sorted({*public, *vars(protocol).get("__annotations__", {})})


INSIGHT_DATA_MEMBERS = _members(InsightData)
_ABSENT = object()


def insight_data(trainer: L.Trainer) -> InsightData:
    """The trainer's data module as the views may read it; a one-line error if it lacks a member."""
    data = trainer.datamodule
    # getattr_static: looking must not run a property (``info`` raises before the data is set up).
    missing = [name for name in INSIGHT_DATA_MEMBERS
               if inspect.getattr_static(data, name, _ABSENT) is _ABSENT]
    if data is None or missing:
        what = "no data module" if data is None else f"{type(data).__name__} (no {', '.join(missing)})"
        raise UserError(
            f"the insight views read a data module with {', '.join(INSIGHT_DATA_MEMBERS)} "
            f"(layerscope.insight.inputs.InsightData); this run has {what}: provide them or set insight=off"
        )
    return data


def inspected_model(pl_module: L.LightningModule) -> nn.Module:
    """The network the views look inside: the LightningModule's ``model``, with its layer list."""
    model = getattr(pl_module, "model", None)
    if not isinstance(model, nn.Module):
        raise UserError(
            f"the insight views look inside {type(pl_module).__name__}.model, which is not a torch module "
            "here: keep the network in .model or set insight=off"
        )
    return model


def model_input(trainer: L.Trainer, pl_module: L.LightningModule, images: torch.Tensor) -> torch.Tensor:
    """Stored uint8 images as the model sees them: on its device, normalised."""
    return precision_input(trainer, insight_data(trainer).preprocess(images.to(pl_module.device)))


def example_input(trainer: L.Trainer, pl_module: L.LightningModule) -> torch.Tensor:
    """The first validation image, ready for the model: what traces of the model run on."""
    return model_input(trainer, pl_module, insight_data(trainer).val.images[:1])


def model_anatomy(trainer: L.Trainer, pl_module: L.LightningModule) -> list[LayerAnatomy]:
    """Each named layer's parameters and receptive field, traced with one validation image."""
    return trace_anatomy(inspected_model(pl_module), example_input(trainer, pl_module))

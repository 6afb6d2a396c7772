"""The layer-list contract: a model's named layers, input side first, and hooks on their outputs.

Everything that looks inside a model (insight views, explanations, notebooks) reaches its layers
only through these helpers, never through architecture details.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

Layer = tuple[str, nn.Module]


def named_layers(model: nn.Module) -> list[Layer]:
    """The model's layers as the ``named_layers()`` contract lists them, input side first."""
    if not hasattr(model, "named_layers"):
        raise TypeError(f"{type(model).__name__} has no named_layers(): its layers cannot be looked at")
    return list(model.named_layers())


def layer_tag(index: int, name: str) -> str:
    """``01_stem``: numbered so that TensorBoard (and a file listing) sorts the tags by depth."""
    return f"{index + 1:02d}_{name}"


@contextmanager
def layer_hooks(layers: list[Layer], on_output: Callable[[int, torch.Tensor], None]) -> Iterator[None]:
    """Call ``on_output(layer_index, output)`` for each named layer's output; hooks removed after."""
    handles = []
    for index, (_, module) in enumerate(layers):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor, index: int = index) -> None:
            on_output(index, output.detach())
        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()

"""The layer-list contract: a model's named layers, input side first, and hooks on their outputs.

Everything that looks inside a model (insight views, explanations, notebooks) reaches its layers
only through these helpers, never through architecture details.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

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
def module_hooks(
    points: Mapping[Hashable, tuple[nn.Module, bool]],
    on_tensor: Callable[[Hashable, torch.Tensor], None],
    detach: bool = True,
) -> Iterator[None]:
    """Call ``on_tensor(key, tensor)`` with each module's first input (``True``) or its output
    (``False``) on every forward pass; hooks removed after. The tensor is detached unless
    ``detach=False`` (a caller that differentiates through it, as feature visualisation does)."""

    def handed(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.detach() if detach else tensor

    handles = []
    for key, (module, of_input) in points.items():
        if of_input:
            def keep_input(_module: nn.Module, inputs: tuple, key: Hashable = key) -> None:
                on_tensor(key, handed(inputs[0]))
            handles.append(module.register_forward_pre_hook(keep_input))
        else:
            def keep_output(
                _module: nn.Module, _inputs: tuple, output: torch.Tensor, key: Hashable = key
            ) -> None:
                on_tensor(key, handed(output))
            handles.append(module.register_forward_hook(keep_output))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def layer_hooks(
    layers: list[Layer], on_output: Callable[[int, torch.Tensor], None]
) -> AbstractContextManager[None]:
    """Call ``on_output(layer_index, output)`` for each named layer's output; hooks removed after."""
    return module_hooks({index: (module, False) for index, (_, module) in enumerate(layers)}, on_output)


@contextmanager
def inspection_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for the duration; every module's own flag restored after."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(False), torch.no_grad():
            yield
    finally:
        for module, training in flags:
            module.training = training

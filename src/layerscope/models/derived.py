"""The layer list of a model that has no ``named_layers()``: derived once from a forward pass.

A layer is a convolution, or a linear layer that maps a flat vector (the classifier head, an MLP
layer); linear layers applied at every position of a feature map (a ConvNeXt block's, a vision
transformer's) are steps inside a layer and not counted. Layers are listed in the order the forward
pass runs them, input side first, and named by their module path in the network. A 1x1 convolution
applied to a globally pooled map (the gates of squeeze-and-excitation blocks, in MobileNet and
EfficientNet) is a step inside a layer too: it sees no picture, only one number per channel.
"""

from __future__ import annotations

import torch
from torch import nn

from layerscope.errors import UserError
from layerscope.models.layers import Layer, inspection_mode


def derive_layers(net: nn.Module, example: torch.Tensor) -> list[Layer]:
    """``net``'s layers in forward order, found by running ``example`` through it once.

    The pass runs in eval mode without gradients and restores every module's mode, so building a
    model does not change its BatchNorm statistics or draw random numbers.
    """
    names = {id(module): name for name, module in net.named_modules()}
    order: list[Layer] = []
    seen: set[int] = set()
    shapes: list[tuple[int, ...]] = []  # the output shape of each layer in ``order``
    gates: list[torch.Tensor] = []  # pooled maps, and what modules made of them: a gate's inputs

    def pools_by_function(module: nn.Module, given: torch.Tensor) -> bool:
        # Gates that pool with a function rather than a module (timm's): a 1x1 convolution on a
        # 1x1 map, where the layer before still had a picture.
        pooled = given.dim() == 4 and given.shape[-2:] == (1, 1) and module.kernel_size == (1, 1)
        return pooled and bool(shapes) and shapes[-1][-2:] != (1, 1)

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        given = inputs[0] if inputs else None
        from_gate = given is not None and any(given is tensor for tensor in gates)
        if from_gate or isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
            gates.append(output)
        if id(module) in seen or not isinstance(given, torch.Tensor):
            return
        if isinstance(module, nn.Conv2d):
            counted = not (from_gate or pools_by_function(module, given))
        else:
            counted = isinstance(module, nn.Linear) and output.dim() == 2
        if counted:
            seen.add(id(module))
            order.append((names[id(module)], module))
            shapes.append(tuple(output.shape))

    leaves = [m for m in net.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        with inspection_mode(net):
            net(example)
    finally:
        for handle in handles:
            handle.remove()
    if not order:
        raise UserError(f"{type(net).__name__} has no convolution or linear layer to look at")
    return order


def pick_layers(layers: list[Layer], count: int | str) -> list[Layer]:
    """``count`` layers spread evenly over the depth (the first and the last always), or ``all``.

    The views draw every layer they are given; a network of 50 or 200 layers would fill TensorBoard
    with panels and take minutes per epoch, so by default a readable subset is shown.
    """
    if count == "all":
        return list(layers)
    if isinstance(count, bool) or not isinstance(count, int) or count < 2:
        raise UserError(f"model.layers={count!r} must be a whole number >= 2 or all")
    if count >= len(layers):
        return list(layers)
    step = (len(layers) - 1) / (count - 1)
    return [layers[round(i * step)] for i in range(count)]

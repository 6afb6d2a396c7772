"""Looking at a model's named layers without changing it: hooks, eval passes, layer anatomy.

Everything in ``insight`` goes through these helpers, so the rules hold in one place: hooks are
removed after use, inspection passes run in eval mode under ``no_grad`` (BatchNorm statistics are
not updated), each module's train/eval flag is restored afterwards, and nothing draws from the
global random number generators (so training is the same with insight on or off).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from layerscope.models.layers import inspection_mode, layer_hooks, named_layers


def forward_batches(
    forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Run ``forward`` over ``images`` a batch at a time and return the concatenated outputs."""
    return torch.cat([forward(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


# --- layer anatomy: which parameters belong to a layer, and what it can see ---------------------
@dataclass
class LayerAnatomy:
    """What one named layer is made of, found by tracing a forward pass.

    ``parameters`` are those of the modules that run between the previous named layer's output and
    this one's (for a conv-BN-ReLU layer: the convolution's weights and BatchNorm's scale and bias).
    ``receptive_field`` is the side, in input pixels, of the square that one output unit sees;
    an output at grid position (i, j) is centred on input pixel (start + i * jump, start + j * jump).
    """

    name: str
    parameters: dict[str, nn.Parameter] = field(default_factory=dict)
    receptive_field: int = 1
    jump: int = 1
    start: float = 0.0
    output_shape: tuple[int, ...] = ()


def _pair(value: int | tuple[int, ...]) -> int:
    return value if isinstance(value, int) else value[0]


def _step(module: nn.Module) -> tuple[int, int, int, int] | None:
    """(kernel, stride, padding, dilation) of a module that moves a window over the image."""
    if isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        padding = module.padding if not isinstance(module.padding, str) else 0
        dilation = getattr(module, "dilation", 1)
        return _pair(module.kernel_size), _pair(module.stride), _pair(padding), _pair(dilation)
    return None


def _sees_everything(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear | nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d)


def trace_anatomy(model: nn.Module, example: torch.Tensor) -> list[LayerAnatomy]:
    """Trace one forward pass of ``example`` (a batch of one) to find each named layer's anatomy.

    The receptive field follows the chain of convolutions and poolings in the order they run
    (Araujo et al., "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019).
    In a residual block the convolution path is the widest, so the chain gives the block's field.
    """
    layers = named_layers(model)
    layer_of = {id(module): index for index, (_, module) in enumerate(layers)}
    image_size = example.shape[-1]
    anatomy = [LayerAnatomy(name) for name, _ in layers]
    state = {"rf": 1, "jump": 1, "start": 0.0, "pending": {}}
    owners = {id(m): name for name, m in model.named_modules()}

    def leaf_hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        step = _step(module)
        if step is not None:
            kernel, stride, padding, dilation = step
            state["rf"] += (kernel - 1) * dilation * state["jump"]
            state["start"] += ((kernel - 1) * dilation / 2 - padding) * state["jump"]
            state["jump"] *= stride
            # A shortcut's strided convolution runs after the main path has already strided: the
            # chain counts the stride twice, which puts the map's last unit outside the image.
            width = output.shape[-1] if output.dim() == 4 else 1
            while state["jump"] > 1 and state["start"] + (width - 1) * state["jump"] > image_size:
                state["jump"] //= 2
        elif _sees_everything(module):
            state["rf"], state["start"] = image_size, (image_size - 1) / 2
        for name, param in module.named_parameters(recurse=False):
            state["pending"][f"{owners[id(module)]}.{name}"] = param
        index = layer_of.get(id(module))
        if index is not None:
            _close_layer(anatomy[index], state, output, image_size)

    def layer_hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        if next(module.children(), None) is not None:  # a named layer that is a container
            _close_layer(anatomy[layer_of[id(module)]], state, output, image_size)

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(leaf_hook) for m in leaves]
    handles += [m.register_forward_hook(layer_hook) for _, m in layers]
    try:
        with inspection_mode(model):
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return anatomy


def _close_layer(entry: LayerAnatomy, state: dict, output: torch.Tensor, image_size: int) -> None:
    entry.parameters.update(state["pending"])
    state["pending"] = {}
    entry.receptive_field = min(int(state["rf"]), image_size) if output.dim() == 4 else image_size
    entry.jump, entry.start = int(state["jump"]), float(state["start"])
    entry.output_shape = tuple(output.shape[1:])


# --- per-layer summaries of a sample of images -------------------------------------------------
@dataclass
class LayerStats:
    """For N images and one layer's C channels: mean and max over positions, and where the max is."""

    mean: torch.Tensor  # (N, C) float
    peak: torch.Tensor  # (N, C) float
    peak_at: torch.Tensor  # (N, C) int64: flat position (row * width + col); 0 for 1-D outputs
    width: int  # the layer's output width (1 for 1-D outputs)


def _summarise(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    output = output.float()
    if output.dim() == 2:
        return output.cpu(), output.cpu(), torch.zeros_like(output, dtype=torch.long).cpu(), 1
    count, channels, height, width = output.shape
    # (N, H*W, C): no copy for the channels-last tensors the models run on.
    flat = output.permute(0, 2, 3, 1).reshape(count, height * width, channels)
    peak, peak_at = flat.max(dim=1)
    return flat.mean(dim=1).cpu(), peak.cpu(), peak_at.cpu(), width


class StatsCollector:
    """Hook target that summarises each named layer's output; ``rows`` limits how much of a batch."""

    def __init__(self, layer_count: int) -> None:
        self.chunks: list[list[tuple]] = [[] for _ in range(layer_count)]
        self.rows: int | None = None

    def __call__(self, index: int, output: torch.Tensor) -> None:
        if self.rows is not None:
            output = output[: self.rows]
        if len(output):
            self.chunks[index].append(_summarise(output))

    def stats(self) -> list[LayerStats]:
        return [
            LayerStats(*(torch.cat([c[k] for c in chunks]) for k in range(3)), width=chunks[0][3])
            for chunks in self.chunks
        ]


def layer_stats(
    forward: Callable[[torch.Tensor], torch.Tensor],
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
) -> tuple[list[LayerStats], torch.Tensor]:
    """One inspection pass over ``images``: per-layer stats and the logits."""
    layers = named_layers(model)
    collector = StatsCollector(len(layers))
    with inspection_mode(model), layer_hooks(layers, collector):
        logits = forward_batches(forward, images, batch_size).float().cpu()
    return collector.stats(), logits


def grid_side(count: int) -> tuple[int, int]:
    """Rows and columns of a near-square grid holding ``count`` tiles."""
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols

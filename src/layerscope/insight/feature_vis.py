"""What a channel is looking for: the image that excites it most, found by gradient ascent.

Feature visualisation (Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017) starts
from noise and changes the image, not the network, to drive one channel up. Done naively this
finds high-frequency patterns no photograph contains; the paper's remedies are used here:

- objective: the channel's mean activation over all positions (the layer's output as the layer
  list gives it, after its ReLU), the paper's "channel" objective, not a single neuron's; while a
  ReLU holds the channel at zero everywhere (no gradient), its largest input instead, which turns
  it on where it is closest (in the spirit of lucid's redirected ReLU gradient);
- parameterisation: the image is a Fourier spectrum scaled by 1/frequency (so every frequency
  starts equally easy to change), turned into pixels by an inverse FFT and a sigmoid into [0, 1];
  the pixels then go through the data's own preprocessing (normalisation) into the model;
- robustness: each step sees the image randomly shifted (up to 1/16 of its side), scaled (+-10 %)
  and rotated (+-10 degrees), so only patterns that survive small moves are kept (the paper's
  jitter, scale and rotate; the amounts of lucid's ``standard_transforms`` at our image sizes);
- a fixed number of Adam steps (learning rate 0.05, as lucid), from the same seeded noise at
  every drawing, so the pictures of one channel differ across steps only because the network did.

The channels are those ``top_patches`` shows (its most selective channels, chosen once per run),
and each picture is drawn beside the channel's strongest validation patches: what the channel
would like to see beside what it responds to in real images. The picture is a whole image, the
patches only the part of the image one unit sees.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from layerscope.errors import UserError
from layerscope.insight import render
from layerscope.insight.base import Context, EpochView
from layerscope.insight.capture import LayerAnatomy
from layerscope.insight.inputs import insight_data, inspected_model, model_input
from layerscope.insight.sample import Sample
from layerscope.insight.top_patches import ChosenChannels, channel_patches, top_images
from layerscope.models.layers import inspection_mode, layer_tag, module_hooks, named_layers

JITTER = 1 / 16  # random shift, as a share of the side (lucid: 8 px at 128 px)
SCALE = 0.1  # random scaling by up to +-10 % (lucid: 0.9 to 1.1)
DEGREES = 10.0  # random rotation by up to +-10 degrees (lucid: -10 to 10)
START_SPREAD = 0.01  # standard deviation of the starting spectrum: near-grey noise (lucid's sd)

Target = tuple[int, int]  # (index in the layer list, channel)


def spectrum_scale(height: int, width: int) -> torch.Tensor:
    """1/frequency for each coefficient of a real 2-D FFT of an (height, width) image."""
    rows = torch.fft.fftfreq(height)[:, None]
    cols = torch.fft.rfftfreq(width)[None, :]
    return 1 / torch.sqrt(rows**2 + cols**2).clamp_min(1 / max(height, width))


def fourier_image(spectrum: torch.Tensor, scale: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w // 2 + 1, 2) spectrum -> (N, C, h, w) images in [0, 1] (lucid's ``fft_image``)."""
    pixels = torch.fft.irfft2(torch.view_as_complex(spectrum) * scale, s=size, norm="ortho")
    return torch.sigmoid(pixels / 4)  # lucid's /4: the sigmoid starts in its linear range


def random_moves(steps: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """(steps, count, 2, 3) affine matrices: a random shift, scale and rotation per step and image."""
    uniform = torch.rand(steps, count, 4, generator=generator) * 2 - 1
    shift = 2 * JITTER * uniform[..., :2]  # affine_grid's coordinates span 2 per side
    scale = 1 + SCALE * uniform[..., 2]
    angle = math.radians(DEGREES) * uniform[..., 3]
    cos, sin = scale * angle.cos(), scale * angle.sin()
    return torch.stack([torch.stack([cos, -sin, shift[..., 0]], -1),
                        torch.stack([sin, cos, shift[..., 1]], -1)], -2)


def warp(images: torch.Tensor, move: torch.Tensor) -> torch.Tensor:
    """Resample (N, C, H, W) images along affine ``move``s, bilinearly, the edge pixels repeated outside.

    Written with ``gather`` rather than ``grid_sample``: gather's gradient has a deterministic CUDA
    kernel, so runs with ``trainer.deterministic=true`` can draw it.
    """
    count, channels, height, width = images.shape
    grid = F.affine_grid(move, [count, channels, height, width], align_corners=False)
    x = ((grid[..., 0] + 1) * width - 1) / 2  # pixel coordinates of each output pixel's source
    y = ((grid[..., 1] + 1) * height - 1) / 2
    flat = images.flatten(2)
    warped = torch.zeros_like(flat)
    for corner_x in (x.floor(), x.floor() + 1):
        for corner_y in (y.floor(), y.floor() + 1):
            weight = (1 - (x - corner_x).abs()) * (1 - (y - corner_y).abs())
            source = corner_y.clamp(0, height - 1) * width + corner_x.clamp(0, width - 1)
            index = source.long().flatten(1).unsqueeze(1).expand(-1, channels, -1)
            warped = warped + weight.flatten(1).unsqueeze(1) * flat.gather(2, index)
    return warped.view_as(images)


@contextmanager
def _layer_outputs(modules: dict[int, nn.Module]) -> Iterator[dict[int, torch.Tensor]]:
    """What ``modules`` (by layer index) saw in the latest forward pass, gradients kept: a ReLU's
    input (the channel objective applies the ReLU itself), any other layer's output."""
    outputs: dict[int, torch.Tensor] = {}
    points = {index: (module, isinstance(module, nn.ReLU)) for index, module in modules.items()}
    with module_hooks(points, outputs.__setitem__, detach=False):
        yield outputs


def channel_objective(values: torch.Tensor, before_relu: bool) -> torch.Tensor:
    """A channel's mean activation; a ReLU channel that is off everywhere scores its largest input.

    Not its mean input: a filter whose weights sum to zero (an edge) has a mean input near zero
    for every image, the largest one rises as soon as an edge appears anywhere.
    """
    if not before_relu:
        return values.float().mean()
    values = values.float()
    # torch.where, not an if: no wait for the device at every step.
    return torch.where((values > 0).any(), values.clamp_min(0).mean(), values.max())


def visualise(
    forward: Callable[[torch.Tensor], object],
    model: nn.Module,
    targets: list[Target],
    shape: tuple[int, int, int],
    steps: int,
    learning_rate: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """One image in [0, 1] per target, of ``shape`` (C, H, W), optimised to excite its channel.

    ``forward`` takes images in [0, 1] and runs ``model`` on them (preprocessing included). The
    model runs in eval mode and only the images get gradients: the parameters' ``.grad`` stay
    as they were, every module's mode is restored and the hooks are removed. Random numbers come
    only from ``generator``.
    """
    channels, height, width = shape
    device = next(model.parameters()).device
    start = torch.randn(len(targets), channels, height, width // 2 + 1, 2, generator=generator)
    spectrum = (START_SPREAD * start).to(device).requires_grad_()
    scale = spectrum_scale(height, width).to(device)
    moves = random_moves(steps, len(targets), generator).to(device)
    modules = {layer: named_layers(model)[layer][1] for layer, _ in targets}
    before_relu = {layer: isinstance(module, nn.ReLU) for layer, module in modules.items()}
    optimiser = torch.optim.Adam([spectrum], lr=learning_rate)
    with inspection_mode(model), torch.enable_grad(), _layer_outputs(modules) as outputs:
        for step in range(steps):
            forward(warp(fourier_image(spectrum, scale, (height, width)), moves[step]))
            objective = sum(channel_objective(outputs[layer][row, channel], before_relu[layer])
                            for row, (layer, channel) in enumerate(targets))
            spectrum.grad = torch.autograd.grad(-objective, spectrum)[0]
            optimiser.step()
    return fourier_image(spectrum.detach(), scale, (height, width))


def readable_layers(anatomy: list[LayerAnatomy]) -> list[int]:
    """Layer 1, the middle layer of each stage and the last convolutional layer (indices).

    A stage is the layers whose names share the part before the first dot (ResNet's ``stage2``);
    its middle layer is the output of its middle block. Only layers with a spatial map count
    (every layer where the model has none, an MLP); without stages, every such layer is shown.
    """
    maps = [i for i, entry in enumerate(anatomy) if len(entry.output_shape) == 3] or list(range(len(anatomy)))
    stages: dict[str, list[int]] = {}
    for index in maps:
        stages.setdefault(anatomy[index].name.split(".")[0], []).append(index)
    middles = [stage[len(stage) // 2] for stage in stages.values() if len(stage) > 1]
    return sorted({maps[0], *middles, maps[-1]}) if middles else maps


def feature_images(
    trainer: L.Trainer, pl_module: L.LightningModule, targets: list[Target], steps: int,
    learning_rate: float = 0.05, seed: int = 0, image_size: int | None = None,
) -> torch.Tensor:
    """(len(targets), C, H, W) images in [0, 1], each optimised to excite its (layer, channel).

    The images have the data's size, or ``image_size`` square where the model takes that size too
    (a model ending in a fully connected layer takes only its own); they start from the noise of
    generator ``seed``, the same at every call.
    """
    stored = insight_data(trainer).val.images
    size = (image_size or stored.shape[-2], image_size or stored.shape[-1])
    model = inspected_model(pl_module)

    def forward(images: torch.Tensor) -> object:
        # preprocess takes the stored 0-255 scale; a float image in it is the same image, differentiable
        return pl_module(model_input(trainer, pl_module, 255 * images))

    if size != tuple(stored.shape[-2:]):
        try:
            with inspection_mode(model), torch.no_grad():
                forward(torch.zeros(1, stored.shape[1], *size))
        except RuntimeError as error:
            raise UserError(
                f"insight.feature_vis.image_size={image_size}: this model does not run on {size[0]} x "
                f"{size[1]} images ({str(error).splitlines()[0]}); set image_size=null for the data's size"
            ) from None
    return visualise(
        forward, model, targets, (stored.shape[1], *size), steps, learning_rate,
        torch.Generator().manual_seed(seed),
    )


class ChannelRows:
    """Per layer, a picture with a row per channel: its optimised image, then its top patches.

    The one channel loop of ``feature_vis`` and ``layer_story``. The channels are chosen as
    ``top_patches`` chooses them (the most selective), once per layer at its first drawing, so every
    later drawing shows the same channels.
    """

    def __init__(
        self, channels: int, patches: int, steps: int, learning_rate: float = 0.05, seed: int = 0,
        image_size: int | None = None, zoom: int = 2,
    ) -> None:
        self.patches, self.steps = patches, steps
        self.learning_rate, self.seed, self.image_size, self.zoom = learning_rate, seed, image_size, zoom
        self.chosen = ChosenChannels(channels)

    def draw(self, context: Context, sample: Sample, shown: list[int]) -> dict[int, torch.Tensor]:
        """Layer index -> (3, H, W) picture, for each layer in ``shown``, from the validation ``sample``."""
        anatomy = context.anatomy()
        chosen = {index: self.chosen(index, sample.stats[index]) for index in shown}
        targets = [(index, int(channel)) for index in shown for channel in chosen[index]]
        pictures = feature_images(
            context.trainer, context.pl_module, targets, self.steps, self.learning_rate, self.seed,
            self.image_size,
        )
        tile = max(pictures.shape[-2:]) * self.zoom
        optimised = iter(render.as_rgb(pictures.float().cpu()))
        examples = render.display_images(sample.images)
        drawn = {}
        for index in shown:
            stats, channels = sample.stats[index], chosen[index]
            lines = []
            for channel, best in zip(channels, top_images(stats, channels, self.patches), strict=True):
                tiles = [next(optimised)[None]]
                if self.patches:
                    tiles.append(channel_patches(examples, anatomy[index], stats, int(channel), best))
                lines.append(torch.cat([render.resize(t, tile) for t in tiles]))
            drawn[index] = render.grid(lines)
        return drawn


class FeatureVisualisation(EpochView):
    """``feature_vis/NN_<layer>``: a row per channel, its optimised image and then its top patches.

    ``layers`` are layer numbers as the layer list counts them (1 = the input side), None for
    :func:`readable_layers`. The channels are chosen as ``top_patches`` chooses them (the most
    selective at the first drawing), so with the same sample and as many or fewer channels the
    rows are the same channels as there.
    """

    def __init__(
        self, every_n_epochs: int = 1, layers: list[int] | None = None, channels: int = 4, steps: int = 128,
        image_size: int | None = None, learning_rate: float = 0.05, patches: int = 6, zoom: int = 2,
        sample_size: int = 2000, seed: int = 0,
    ) -> None:
        super().__init__(every_n_epochs)
        self.sample_size = sample_size
        self.layers = None if layers is None else list(layers)
        self.rows = ChannelRows(channels, patches, steps, learning_rate, seed, image_size, zoom)

    def _shown_layers(self, anatomy: list[LayerAnatomy]) -> list[int]:
        if self.layers is None:
            return readable_layers(anatomy)
        wrong = [n for n in self.layers if not 1 <= n <= len(anatomy)]
        if wrong:
            raise UserError(
                f"insight.feature_vis.layers has {wrong}: this model has layers 1 to {len(anatomy)} "
                "(set layers=null for layer 1, each stage's middle and the last convolution)"
            )
        return sorted({n - 1 for n in self.layers})

    def draw(self, context: Context) -> None:
        anatomy = context.anatomy()
        drawn = self.rows.draw(context, context.sample(self.sample_size), self._shown_layers(anatomy))
        for index, picture in drawn.items():
            tag = f"feature_vis/{layer_tag(index, anatomy[index].name)}"
            render.log_image(context.writer, tag, picture, context.step)

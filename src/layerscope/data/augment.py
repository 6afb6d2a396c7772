"""Batch-level image operations on uint8 tensors: one kernel call per batch, never per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, padding: int, hflip: bool) -> torch.Tensor:
    """Random crop after zero-padding by ``padding``, and a random horizontal flip per image.

    Both are one gather over the padded batch; the result is channels-last in memory, which is
    what convolutions on CPU and GPU prefer.
    """
    n, _, h, w = images.shape
    device = images.device
    if padding > 0:
        images = F.pad(images, (padding, padding, padding, padding))
    shift_y = torch.randint(0, 2 * padding + 1, (n, 1), device=device)
    shift_x = torch.randint(0, 2 * padding + 1, (n, 1), device=device)
    rows = shift_y + torch.arange(h, device=device)
    cols = torch.arange(w, device=device).expand(n, w)
    if hflip:
        flip = torch.rand(n, 1, device=device) < 0.5
        cols = torch.where(flip, w - 1 - cols, cols)
    cols = cols + shift_x
    batch = torch.arange(n, device=device)[:, None, None]
    # Advanced indices around a slice put the indexed dims first: (n, h, w, C).
    return images[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float, scaled to [0, 1], then standardised per channel."""
    x = images.float().div_(255.0)
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images in [0, 1] units."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].double().div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp(min=1e-12).sqrt()
    return mean.tolist(), std.tolist()


def match_shape(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """Convert uint8 images to ``channels`` (grey <-> RGB) and ``size`` x ``size`` pixels."""
    if images.shape[1] != channels:
        if channels == 3:
            images = images.expand(-1, 3, -1, -1)
        else:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
    if images.shape[-1] != size or images.shape[-2] != size:
        resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
        images = resized.round_().clamp_(0, 255).to(torch.uint8)
    return images.contiguous()


def shift(images: torch.Tensor, dx: int, dy: int, fill: torch.Tensor) -> torch.Tensor:
    """``images`` (N, C, H, W) moved ``dx`` pixels right and ``dy`` down; the uncovered border
    takes the per-channel value ``fill`` (C,), as the zero padding of :func:`random_crop_flip`
    does for training images."""
    _, _, h, w = images.shape
    out = torch.empty_like(images)
    out[:] = fill.to(images).view(1, -1, 1, 1)
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out

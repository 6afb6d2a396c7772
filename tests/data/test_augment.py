"""Batch augmentation and normalisation on uint8 tensors."""

from __future__ import annotations

import torch

from layerscope.data.augment import channel_stats, match_shape, normalise, random_crop_flip, shift


def test_crop_without_padding_or_flip_is_identity() -> None:
    images = torch.randint(0, 256, (8, 3, 10, 10), dtype=torch.uint8)
    assert torch.equal(random_crop_flip(images, padding=0, hflip=False), images)


def test_crop_shifts_by_at_most_padding_and_flips_some() -> None:
    torch.manual_seed(0)
    images = torch.randint(1, 256, (64, 1, 12, 12), dtype=torch.uint8)
    out = random_crop_flip(images, padding=2, hflip=True)
    assert out.shape == images.shape and out.dtype == torch.uint8
    candidates = []
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    flips = 0
    for i in range(len(images)):
        found = None
        for dy in range(5):
            for dx in range(5):
                crop = padded[i, :, dy : dy + 12, dx : dx + 12]
                if torch.equal(out[i], crop):
                    found = "plain"
                elif torch.equal(out[i], crop.flip(-1)):
                    found = "flip"
        candidates.append(found)
        flips += found == "flip"
    assert all(c is not None for c in candidates)  # every output is a crop of its own input
    assert 10 < flips < 54  # about half flipped


def test_normalise_and_stats_agree() -> None:
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    mean, std = channel_stats(images, chunk=7)
    x = normalise(images, torch.tensor(mean), torch.tensor(std))
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-3)


def test_match_shape_converts_channels_and_size() -> None:
    grey = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    rgb = match_shape(grey, channels=3, size=32)
    assert rgb.shape == (4, 3, 32, 32) and rgb.dtype == torch.uint8
    assert torch.equal(rgb[:, 0], rgb[:, 2])
    back = match_shape(torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8), 1, 16)
    assert back.shape == (2, 1, 16, 16)


def test_shift_moves_the_image_and_fills_the_border_per_channel() -> None:
    images = torch.arange(2 * 2 * 4 * 4, dtype=torch.float32).view(2, 2, 4, 4)
    fill = torch.tensor([-1.0, -2.0])
    moved = shift(images, 1, 1, fill)  # one pixel right and down
    assert torch.equal(moved[..., 1:, 1:], images[..., :3, :3])
    assert (moved[:, 0, 0, :] == -1).all() and (moved[:, 1, :, 0] == -2).all()
    back = shift(images, -2, 0, fill)  # two pixels left
    assert torch.equal(back[..., :2], images[..., 2:]) and (back[:, 1, :, 2:] == -2).all()
    assert torch.equal(shift(images, 0, 0, fill), images)
    # The same result as the training augmentation's zero padding, once normalised.
    raw = torch.randint(1, 256, (3, 1, 5, 5), dtype=torch.uint8)
    mean, std = torch.tensor([0.3]), torch.tensor([0.2])
    padded = torch.nn.functional.pad(raw, (0, 1, 0, 1))[..., 1:, 1:]  # moved up-left, black border
    assert torch.allclose(shift(normalise(raw, mean, std), -1, -1, -mean / std), normalise(padded, mean, std))

"""``model=fast`` with a frozen patch-whitening first layer, for screening that idea only.

Keller Jordan's airbench (CIFAR-10 to 94 %) starts with a convolution whose filters are fixed to
the eigenvectors of the training images' 2x2 patch covariance, scaled to unit variance: each
output channel is one decorrelated direction of pixel space, so the later layers start from
whitened inputs; in his ablation it cut the epochs needed from 35 to 21. This module builds the
same idea for grey 28x28 images with 3x3 patches (9 directions and their negatives: 18 frozen
channels, then BatchNorm and ReLU) in front of ``model=fast``'s second stem convolution. It is
not part of the package: run it through ``recipe_sweep.py`` with this folder on the path,

    PYTHONPATH=benchmarks python benchmarks/recipe_sweep.py --seeds 1 \\
        --common "experiment=fashion_fast trainer.max_epochs=6" \\
        --recipe "fast: " --recipe "whitened: model._target_=whitened_stem.WhitenedFast"

The statistics come from the first 5,000 Fashion-MNIST training images, read as ``train.py``
reads them.
"""

from __future__ import annotations

import torch
from torch import nn

from layerscope.data.torchvision_sets import IdxSource
from layerscope.models import FastResNet
from layerscope.models.fast import conv_bn_relu

PATCH = 3  # patch side: 3x3 patches of one grey channel have 9 directions


def whitening_filters(images: torch.Tensor, eps: float = 5e-4) -> torch.Tensor:
    """``2 * PATCH**2`` filters (PATCH x PATCH, one input channel) that whiten ``images``' patches.

    ``images`` is float (N, 1, H, W). The filters are the covariance's eigenvectors divided by the
    square root of their eigenvalues (``eps`` keeps the flat directions finite), and their negatives,
    so that a following ReLU keeps both signs of each direction.
    """
    x = (images - images.mean()) / images.std()
    patches = nn.functional.unfold(x, PATCH, padding=PATCH // 2).transpose(1, 2).reshape(-1, PATCH**2)
    patches = patches - patches.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, 1, PATCH, PATCH)
    return torch.cat([filters, -filters])


class WhitenedFast(FastResNet):
    """``FastResNet`` whose first convolution is replaced by frozen Fashion-MNIST whitening filters."""

    def __init__(self, root: str = "data", sample: int = 5000, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        train = IdxSource(root, "fashion_mnist", download=False).load().train
        images = torch.as_tensor(train.images[:sample], dtype=torch.float32) / 255
        filters = whitening_filters(images)
        whiten = nn.Conv2d(1, len(filters), PATCH, padding=PATCH // 2, bias=False)
        whiten.weight.data.copy_(filters)
        whiten.weight.requires_grad_(False)  # frozen: the optimizer only takes trainable weights
        stem_width = self.stem[1][0].out_channels
        self.stem[0] = nn.Sequential(whiten, nn.BatchNorm2d(len(filters)), nn.ReLU())
        self.stem[1] = conv_bn_relu(len(filters), stem_width)
        nn.init.kaiming_normal_(self.stem[1][0].weight, mode="fan_out", nonlinearity="relu")

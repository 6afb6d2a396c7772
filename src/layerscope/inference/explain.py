"""Why did the network say that? Feature maps layer by layer and a Grad-CAM overlay, as PNGs.

Grad-CAM (Selvaraju et al., ICCV 2017) weights the last convolutional layer's channels by the
gradient of the predicted class and shows where in the image they fired; we use Captum's
implementation (``LayerGradCam``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from captum.attr import LayerAttribution, LayerGradCam
from matplotlib import colormaps
from torch import nn
from torchvision.utils import save_image

from layerscope import ood
from layerscope.files import write_atomically
from layerscope.inference.export import ood_metadata
from layerscope.inference.loading import Classifier
from layerscope.insight.feature_maps import feature_map_grid
from layerscope.insight.render import display_images
from layerscope.models.layers import layer_tag, named_layers


def ood_summary(clf: Classifier) -> dict[str, Any]:
    """What ``in_distribution`` was judged by: the score, its threshold and calibration, or why none."""
    return ood_metadata(clf) or {"score": ood.FALLBACK_SCORE, "threshold": None,
                                 "why": "the checkpoint carries no calibration for its weights"}


def last_spatial_layer(clf: Classifier, maps: dict[str, torch.Tensor]) -> nn.Module:
    """The last layer whose output (in ``maps``, from ``clf.feature_maps``) is a map (C, H, W)."""
    spatial = [name for name, output in maps.items() if output.dim() == 3]
    if not spatial:
        raise ValueError("the model has no convolutional layer: Grad-CAM needs one")
    return dict(named_layers(clf.model))[spatial[-1]]


def grad_cam(
    clf: Classifier, image: torch.Tensor, target: int, layer: nn.Module | None = None
) -> torch.Tensor:
    """(H, W) heat map in [0, 1]: where ``layer`` (by default the last convolutional one) saw ``target``."""
    if layer is None:
        layer = last_spatial_layer(clf, clf.feature_maps(image))
    batch = clf.to_batch(image.unsqueeze(0)).requires_grad_(True)
    cam = LayerGradCam(clf.model, layer)
    attribution = cam.attribute(batch, target=target, relu_attributions=True)
    heat = LayerAttribution.interpolate(attribution, tuple(batch.shape[-2:]), interpolate_mode="bilinear")
    heat = heat[0, 0].detach().cpu()
    return heat / heat.max() if heat.max() > 0 else heat


def explain_image(
    clf: Classifier, image: torch.Tensor, target: int, folder: Path,
    record: dict[str, Any] | None = None, max_channels: int = 16,
) -> None:
    """Write ``folder/feature_maps_NN_layer.png`` for every layer and ``folder/grad_cam.png``, and
    with the prediction's ``record`` ``folder/prediction.json``: the answer, its out-of-distribution
    score and flag, and the threshold they were judged by."""
    folder.mkdir(parents=True, exist_ok=True)
    if record is not None:
        summary = {**record, "ood": ood_summary(clf)}
        write_atomically(folder / "prediction.json", (json.dumps(summary, indent=2) + "\n").encode())
    original = display_images(image.unsqueeze(0))
    maps = clf.feature_maps(image)
    for index, (name, output) in enumerate(maps.items()):
        batch = output.unsqueeze(0)
        batch = batch[:, :max_channels] if batch.dim() == 4 else batch
        picture = feature_map_grid(original, batch, image.shape[-1])
        save_image(picture, folder / f"feature_maps_{layer_tag(index, name)}.png")
    heat = grad_cam(clf, image, target, last_spatial_layer(clf, maps))
    coloured = torch.from_numpy(colormaps["jet"](heat.numpy())[..., :3]).permute(2, 0, 1).float()
    overlay = 0.55 * original[0] + 0.45 * coloured
    save_image(torch.cat([original[0], overlay], dim=2), folder / "grad_cam.png")

"""Why did the network say that? Feature maps layer by layer and a Grad-CAM overlay, as PNGs.

Grad-CAM (Selvaraju et al., ICCV 2017) weights the last convolutional layer's channels by the
gradient of the predicted class and shows where in the image they fired; we use Captum's
implementation (``LayerGradCam``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draw off-screen
import torch
from captum.attr import LayerAttribution, LayerGradCam
from matplotlib import colormaps
from torchvision.utils import save_image

from layerscope.inference.loading import Classifier
from layerscope.insight.capture import layer_tag
from layerscope.insight.feature_maps import feature_map_grid
from layerscope.insight.render import display_images


def grad_cam(clf: Classifier, image: torch.Tensor, target: int) -> torch.Tensor:
    """(H, W) heat map in [0, 1]: where the last convolutional layer saw class ``target``."""
    layers = [module for name, module in clf.model.named_layers()]
    maps = clf.feature_maps(image)
    spatial = [module for module, out in zip(layers, maps.values(), strict=True) if out.dim() == 3]
    if not spatial:
        raise ValueError("the model has no convolutional layer: Grad-CAM needs one")
    batch = clf.to_batch(image.unsqueeze(0)).requires_grad_(True)
    cam = LayerGradCam(clf.model, spatial[-1])
    attribution = cam.attribute(batch, target=target, relu_attributions=True)
    heat = LayerAttribution.interpolate(attribution, tuple(batch.shape[-2:]), interpolate_mode="bilinear")
    heat = heat[0, 0].detach().cpu()
    return heat / heat.max() if heat.max() > 0 else heat


def explain_image(
    clf: Classifier, image: torch.Tensor, target: int, folder: Path, max_channels: int = 16
) -> None:
    """Write ``folder/feature_maps_NN_layer.png`` for every layer and ``folder/grad_cam.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    original = display_images(image.unsqueeze(0))
    for index, (name, output) in enumerate(clf.feature_maps(image).items()):
        batch = output.unsqueeze(0)
        batch = batch[:, :max_channels] if batch.dim() == 4 else batch
        picture = feature_map_grid(original, batch, image.shape[-1])
        save_image(picture, folder / f"feature_maps_{layer_tag(index, name)}.png")
    heat = grad_cam(clf, image, target)
    coloured = torch.from_numpy(colormaps["jet"](heat.numpy())[..., :3]).permute(2, 0, 1).float()
    overlay = 0.55 * original[0] + 0.45 * coloured
    save_image(torch.cat([original[0], overlay], dim=2), folder / "grad_cam.png")

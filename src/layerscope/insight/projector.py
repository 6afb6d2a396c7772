"""The PROJECTOR tab: where the trained network places each validation image, at two depths.

Once, when training ends (on rank zero), the first ``sample_size`` validation images go to
TensorBoard's embedding projector twice, each point with its image as a sprite and its true and
predicted class as metadata:

- ``penultimate_<NN_layer>.input``: the input of the last named layer, the features the classifier
  separates with one linear map (for the built-in CNNs, the last stage's globally pooled output);
- ``middle_<NN_layer>``: the output of the middle named layer (index ``len // 2``), for comparison.

A convolutional output (N, C, H, W) is reduced by global average pooling to one value per channel,
so each point has as many coordinates as the layer has channels; other outputs are flattened.
Colour the points by ``true`` and project them (PCA, t-SNE or UMAP) to see how far each layer has
pulled the classes apart; ``predicted`` shows where the mistakes lie.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from layerscope.errors import UserError
from layerscope.insight import render
from layerscope.insight.base import Context, View
from layerscope.insight.capture import forward_batches
from layerscope.models.layers import inspection_mode, layer_tag, module_hooks, named_layers

METADATA_HEADER = ["true", "predicted"]
SPRITE_LIMIT = 8192  # pixels per side of the sprite sheet the projector loads


def pooled(output: torch.Tensor) -> torch.Tensor:
    """One row per image: a (N, C, H, W) map averaged over positions, anything else flattened."""
    output = output.detach().float()
    return output.mean(dim=(2, 3)) if output.dim() == 4 else output.flatten(1)


def layer_embeddings(
    forward: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, images: torch.Tensor, batch_size: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One inspection pass over ``images``: the penultimate and middle features by tag, and the logits.

    The middle layer is left out where it would be the last layer itself (a model of one or two layers).
    """
    layers = named_layers(model)
    last, middle = len(layers) - 1, len(layers) // 2
    points = {f"penultimate_{layer_tag(last, layers[last][0])}.input": (layers[last][1], True)}
    if middle < last:
        points[f"middle_{layer_tag(middle, layers[middle][0])}"] = (layers[middle][1], False)
    chunks: dict[str, list[torch.Tensor]] = {tag: [] for tag in points}
    with inspection_mode(model), module_hooks(points, lambda tag, t: chunks[tag].append(pooled(t).cpu())):
        logits = forward_batches(forward, images, batch_size).float().cpu()
    return {tag: torch.cat(found) for tag, found in chunks.items()}, logits


def sprites(images: torch.Tensor) -> torch.Tensor:
    """Stored uint8 images as float RGB tiles, shrunk only where the sheet would pass the projector's
    limit (32-pixel tiles fit 65 000 images unshrunk)."""
    tiles = render.display_images(images)
    per_side = SPRITE_LIMIT // math.ceil(math.sqrt(len(images)))
    return render.resize(tiles, per_side) if tiles.shape[-1] > per_side else tiles


class Projector(View):
    """``projector_config.pbtxt`` and, per layer, tensors, sprite and metadata for the PROJECTOR tab."""

    def __init__(self, sample_size: int = 1000, batch_size: int = 250) -> None:
        if sample_size < 1 or batch_size < 1:
            raise UserError(f"insight.projector: sample_size={sample_size} and batch_size={batch_size} "
                            "must be 1 or more")
        self.embedded, self.batch_size = sample_size, batch_size

    def end(self, context: Context) -> None:
        # Once per fit, after the last epoch: the model is final, and no later step can be perturbed.
        data = context.data
        images, labels = data.val.images[: self.embedded], data.val.labels[: self.embedded]
        if not len(labels):
            return
        embeddings, logits = layer_embeddings(context.forward(), context.model, images, self.batch_size)
        names, predicted = data.classes, logits.argmax(1).tolist()
        metadata = [[names[t], names[p]] for t, p in zip(labels.tolist(), predicted, strict=True)]
        tiles = sprites(images)
        for tag, features in embeddings.items():
            context.writer.add_embedding(
                features, metadata=metadata, label_img=tiles, global_step=context.step, tag=tag,
                metadata_header=METADATA_HEADER,
            )

"""The guide inside TensorBoard: what each dashboard shows and which idea of neural networks it is.

Written once when training starts: a text entry per dashboard (TEXT tab), a custom-scalars layout
that puts related curves side by side, and the model graph.
"""

from __future__ import annotations

import logging
import warnings

import lightning as L
import torch
from torch.utils.tensorboard import SummaryWriter

from layerscope.insight.base import tensorboard_writer
from layerscope.insight.capture import inspection_mode, layer_tag, named_layers
from layerscope.insight.inputs import example_input, inspected_model

log = logging.getLogger(__name__)

GUIDE = {
    "00_start_here": """
**You are looking inside a neural network while it learns.** A network is layers of neurons:
the input layer (the pixels), hidden layers, and an output layer with one neuron per class.
Every connection has a *weight* and every neuron a *bias*; learning means adjusting them.
The tabs: SCALARS (loss and accuracy), IMAGES (what each layer sees), HISTOGRAMS and
DISTRIBUTIONS (weights, biases, gradients), CUSTOM SCALARS (curves side by side), PR CURVES,
HPARAMS and GRAPHS. Image steps are epochs (step 0 = before training); drag the slider above an
image to watch it change. Layers are numbered from the input side: `01_...` is layer 1.
""",
    "01_scalars_loss_and_accuracy": """
**SCALARS: the loss says how wrong the network is.** `train/loss` is the cross-entropy of the
training batches: gradient descent pushes it down step by step. `val/acc` is accuracy on images
the network never trains on, the honest score; a growing gap between train and val is
overfitting. `train/lr` is the learning rate: the size of each gradient-descent step.
""",
    "02_images_feature_maps": """
**IMAGES > feature_maps: what each layer makes of an image.** Each row is one fixed validation
image (first tile), followed by the outputs of the first channels of that layer, each scaled to
its own contrast; black tiles are channels that stay silent for this image. Layer 1 responds to
edges and blobs of colour; deeper layers are coarser and respond to larger, more abstract
patterns. Fully connected layers show each neuron as one pixel of a square.
""",
    "03_images_filters": """
**IMAGES > filters/layer1: the weights of layer 1.** Each tile is one filter: the weights of
the connections from a small patch of pixels to one neuron (mid-grey = 0, light = positive,
dark = negative). Random noise at step 0, they become edge, line and colour detectors as
training adjusts the weights.
""",
    "04_images_top_patches": """
**IMAGES > top_patches: what a neuron responds to.** For a few channels of each layer (one per
row), the nine validation-image patches that excite it most, each cut to the part of the image
the neuron can see (its receptive field). The patches grow with depth: a few pixels of edge in
layer 1, parts in the middle layers, whole objects near the top: deeper layers see more
abstract concepts.
""",
    "05_histograms_weights_biases_gradients": """
**HISTOGRAMS / DISTRIBUTIONS: backpropagation at work.** For every layer, the spread of its
`weights`, its `biases` (for a convolution followed by BatchNorm, BatchNorm's shift is the bias)
and of their gradients: the error signal backpropagation sends back to that layer.
`grad_norm/` (SCALARS) is the size of that signal per layer and `update_ratio/` how much one
gradient-descent step changes the layer's weights (around 1e-3 is healthy). If gradients shrink
(vanish) or grow (explode) layer after layer toward the input, the early layers cannot learn well:
the problem residual connections solve. Compare `model=plain` and `model=deep` at
`model.depth=56` in IMAGES > gradients/norm_by_depth.
""",
    "06_probes_abstraction": """
**SCALARS > probe and IMAGES > probe/accuracy_vs_depth: how abstract each layer is, measured.**
After each epoch a linear classifier (a probe) is trained on each layer's pooled outputs to read
off the object class and, on the shapes data set, which parts (circles, bars, triangles...) the
image contains. High probe accuracy means the layer has made that information explicit. If deep
layers build objects out of parts, part information appears before class information does.
`receptive_field/` is how many pixels across one neuron of each layer can see.
""",
    "07_mistakes": """
**IMAGES > mistakes and PR CURVES: where the network is wrong.** The confusion matrix counts, for
each true class (row), what the network predicted (column); off-diagonal cells are mistakes.
Misclassified validation images are shown with their true and predicted labels. PR CURVES show
per class the trade-off between precision and recall as the decision threshold moves.
""",
    "08_hparams_and_graph": """
**HPARAMS: runs compared.** Each run's settings (model, depth, learning rate, batch size...) with
its final validation and test accuracy; start TensorBoard on `outputs/` to compare runs.
**GRAPHS: the network itself**, layer by layer as PyTorch runs it; double-click a block to open it.
""",
}

CUSTOM_SCALARS = {
    "Learning": {
        "loss (train vs validation)": ["Multiline", [r"^train/loss_step$", r"^val/loss$"]],
        "accuracy (train vs validation)": ["Multiline", [r"^train/acc$", r"^val/acc$"]],
        "learning rate": ["Multiline", [r"^train/lr$"]],
    },
    "Backprop": {
        "gradient norm per layer": ["Multiline", [r"^grad_norm/"]],
        "update / weight ratio per layer": ["Multiline", [r"^update_ratio/"]],
    },
    "Abstraction": {
        "probe accuracy per layer: object class": ["Multiline", [r"^probe/class/"]],
        "probe accuracy per layer: parts present": ["Multiline", [r"^probe/parts/\d"]],  # not per part
    },
}


class Guide(L.Callback):
    """``guide/*`` text entries, the custom-scalars layout and (with ``graph``) the model graph."""

    def __init__(self, graph: bool = True) -> None:
        self.graph = graph

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer) if trainer.is_global_zero else None
        if writer is None:
            return
        for tag, text in GUIDE.items():
            writer.add_text(f"guide/{tag}", text.strip(), 0)
        writer.add_text("guide/09_layers_of_this_model", layer_table(inspected_model(pl_module)), 0)
        writer.add_custom_scalars(CUSTOM_SCALARS)
        if self.graph:
            self._add_graph(writer, trainer, pl_module)

    @staticmethod
    def _add_graph(writer: SummaryWriter, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model, example = inspected_model(pl_module), example_input(trainer, pl_module)
        try:
            with inspection_mode(model), warnings.catch_warnings():
                # TensorBoard's graph export still goes through torch.jit.trace, now deprecated.
                warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
                writer.add_graph(model, example)
        except (RuntimeError, TypeError) as error:  # tracing fails on some custom models: warn, go on
            log.warning("the model graph could not be traced for TensorBoard: %s", error)


def layer_table(model: torch.nn.Module) -> str:
    """A markdown table of the model's named layers, input side first."""
    rows = ["| layer | name | type |", "| --- | --- | --- |"]
    for index, (name, module) in enumerate(named_layers(model)):
        rows.append(f"| {index + 1} | `{layer_tag(index, name)}` | {type(module).__name__} |")
    return "**The layers of this model**, as the other dashboards number them:\n\n" + "\n".join(rows)

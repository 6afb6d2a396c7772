"""The guide inside TensorBoard: what each dashboard shows and which idea of neural networks it is.

Written once when training starts: a text entry per dashboard (TEXT tab), a custom-scalars layout
that puts related curves side by side, and the model graph.
"""

from __future__ import annotations

import logging
import warnings

import torch

from layerscope.insight.base import Context, View
from layerscope.insight.inputs import example_input
from layerscope.models.layers import inspection_mode, layer_tag, named_layers

log = logging.getLogger(__name__)

GUIDE = {
    "00_start_here": """
**You are looking inside a neural network while it learns.** A network is layers of neurons:
the input layer (the pixels), hidden layers, and an output layer with one neuron per class.
Every connection has a *weight* and every neuron a *bias*; learning means adjusting them.
The tabs: SCALARS (loss and accuracy), IMAGES (what each layer sees), HISTOGRAMS and
DISTRIBUTIONS (weights, biases, gradients), CUSTOM SCALARS (curves side by side), PR CURVES,
PROJECTOR, HPARAMS and GRAPHS. Image steps are epochs (step 0 = before training); drag the slider
above an image to watch it change. Layers are numbered from the input side: `01_...` is layer 1.
Each entry here says how to read a view and what it measures; `guide/what_this_run_showed`,
written at the end of training, says what this run's own measurements were.
""",
    "01_scalars_loss_and_accuracy": """
**SCALARS: the loss says how wrong the network is.** `train/loss` is the cross-entropy of the
training batches: gradient descent pushes it down step by step. `val/acc` is accuracy on held-out
images the network never trains on; the best checkpoint is the one with the highest `val/acc`,
so that figure is chosen with the validation images and leans optimistic. `test/acc`, measured
once at the end on images used for nothing else, is the unbiased score. A growing gap between
train and val is overfitting. `train/lr` is the learning rate: the size of each step.
""",
    "02_images_feature_maps": """
**IMAGES > feature_maps: what each layer makes of an image.** Each row is one fixed validation
image (first tile), followed by the outputs of the first channels of that layer, each scaled to
its own contrast; black tiles are channels that stay silent for this image. Deeper layers have
coarser maps (the network downsamples) and each of their neurons sees more of the image
(`receptive_field/`). What a channel detects is not something a picture proves: the dissection
(`dissection/`) measures it. Fully connected layers show their neurons as one tile, a pixel each.
""",
    "03_images_filters": """
**IMAGES > filters/layer1: the weights of layer 1.** Each tile is one filter: the weights of
the connections from a small patch of pixels to one neuron (mid-grey = 0, light = positive,
dark = negative). Step 0 is their random initialisation; the slider shows how training changes
them. Whether a layer-1 unit acts as an edge detector is measured, for shapes, in
`dissection/edge/01_...`; compare its step 0, the random filters.
""",
    "04_images_top_patches": """
**IMAGES > top_patches: what a neuron responds to most.** For a few channels of each layer (one per
row), the nine validation-image patches that excite it most, each cut to the part of the image
the neuron can see (its receptive field), so the patches grow with depth. They show what the
strongest responses look like; whether the unit detects an edge, a part or an object is
measured by the dissection. The output layer is trained on the labels, so its top patches
being of one class says nothing about the layers below.
""",
    "05_histograms_weights_biases_gradients": """
**HISTOGRAMS / DISTRIBUTIONS: backpropagation at work.** For every layer, the spread of its
`weights`, its `biases` (for a convolution followed by BatchNorm, BatchNorm's shift is the bias)
and of their gradients, which backpropagation computes from the loss, output layer first.
`grad_norm/` (SCALARS) is the norm of each layer's weight gradient and `update_ratio/` how much
one gradient-descent step changes the layer's weights. Gradient norms that differ by orders of
magnitude across depth mean some layers learn much faster than others. He et al. (2016, section
4.1) found that deep *plain* networks with BatchNorm train worse than shallower ones although
their gradients do not vanish, and call it an optimisation difficulty that shortcut connections
remove. Compare `model=plain` and `model=deep` at `model.depth=56` in
IMAGES > gradients/norm_by_depth. `gradients/non_finite_layers` counts the layers whose gradients
held inf or NaN at a logged step (under fp16 mixed precision, a step the loss scaler skips); they
get no histogram or norm at that step.
""",
    "06_probes_abstraction": """
**SCALARS > probe, IMAGES > probe/accuracy_vs_depth and probe/parts_vs_depth.** Before training,
after every second epoch and after the last (`insight.probes.every_n_epochs`), a linear classifier
(a probe) is fitted on each layer's pooled outputs (every channel's mean and
maximum over the image) and scored on held-out images: for the object class and, on the shapes
data set, for whether each part (circle, ring, bar...) is anywhere in the image. A high score
means the information can be read off that layer linearly. The probes say *whether* a layer holds
the information, not *where* single units find it; pooled deep layers can hold a part's presence
as well as middle ones. `receptive_field/` is how many pixels across one neuron of each layer sees.
""",
    "07_dissection": """
**SCALARS > dissection and IMAGES > dissection/detectors_by_depth: what single units detect.**
Network Dissection (Bau et al., CVPR 2017): each unit of each convolutional layer is switched on
where its activation is in its top few per cent (the quantile is in the config), its map is
upsampled to the image and compared by IoU (intersection over union) with pixel masks of concepts:
on shapes its exact part edges, seven parts and ten objects; on any data the edges of the image
itself (Canny), on colour images eleven colour names, on MNIST and Fashion-MNIST each class's
silhouette (the pixels that are not background), and on an image folder the masks brought with
it. A unit whose best IoU clears the threshold is labelled an edge, part, object or colour detector
(each source of concepts labels the units on its own: colours beside shapes' own concepts);
`dissection/<type>/NN_layer` is the share of a layer's units of each type, the chart shows all
layers side by side, `dissection/best_detectors` the best unit for each concept on a few images,
and TEXT `dissection/detectors` every labelled unit. Step 0 is the untrained network: compare.
It runs before training, after every second epoch and after the last (`insight.dissection.every_n_epochs`).
""",
    "08_projector_and_feature_vis": """
**PROJECTOR: the validation images as points**, once at the end of training: each image placed by
the features of the last layer's input, and of a middle layer, with its picture and its true
and predicted class. Colour by class and project with PCA, t-SNE or UMAP to see how far each
layer has pulled the classes apart. **IMAGES > feature_vis** (insight=full): for the channels
shown in top_patches, an input optimised from noise to excite the channel most (Olah et al.,
Distill 2017), beside its top patches.
**IMAGES > layer_story** (also `layer_story.png` in the run folder), at the end of training: layer
1, the middle layer of each stage and the last convolution, before training and at the end, on
one page: each layer's most selective channels (optimised image and top patches), its best unit
by dissection with its IoU, and the dissection and probe charts of both moments.
""",
    "09_mistakes": """
**IMAGES > mistakes and PR CURVES: where the network is wrong.** The confusion matrix counts, for
each true class (row), what the network predicted (column); off-diagonal cells are mistakes.
Misclassified validation images are shown with their true and predicted labels. PR CURVES show
per class the trade-off between precision and recall as the decision threshold moves.
""",
    "10_hparams_and_graph": """
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
        "edge detectors per layer (dissection)": ["Multiline", [r"^dissection/edge/"]],
        "part detectors per layer (dissection)": ["Multiline", [r"^dissection/part/"]],
        "object detectors per layer (dissection)": ["Multiline", [r"^dissection/object/"]],
    },
}


class Guide(View):
    """``guide/*`` text entries, the custom-scalars layout and (with ``graph``) the model graph; at the
    end, ``guide/what_this_run_showed`` from the run's results (``base.Results.findings``)."""

    def __init__(self, graph: bool = True) -> None:
        self.graph = graph

    def start(self, context: Context) -> None:
        writer = context.writer
        for tag, text in GUIDE.items():
            writer.add_text(f"guide/{tag}", text.strip(), 0)
        writer.add_text("guide/11_layers_of_this_model", layer_table(context.model), 0)
        writer.add_custom_scalars(CUSTOM_SCALARS)
        if self.graph:
            self._add_graph(context)

    def end(self, context: Context) -> None:
        findings = context.results.findings()
        if findings:
            items = "\n".join(f"- {finding}" for finding in findings)
            text = f"**What this run showed**, in its own measurements:\n\n{items}"
            context.writer.add_text("guide/what_this_run_showed", text, context.step)

    @staticmethod
    def _add_graph(context: Context) -> None:
        model, example = context.model, example_input(context.trainer, context.pl_module)
        try:
            with inspection_mode(model), warnings.catch_warnings():
                # TensorBoard's graph export still goes through torch.jit.trace, now deprecated.
                warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
                context.writer.add_graph(model, example)
        except (RuntimeError, TypeError) as error:  # tracing fails on some custom models: warn, go on
            log.warning("the model graph could not be traced for TensorBoard: %s", error)


def layer_table(model: torch.nn.Module) -> str:
    """A markdown table of the model's named layers, input side first."""
    rows = ["| layer | name | type |", "| --- | --- | --- |"]
    for index, (name, module) in enumerate(named_layers(model)):
        rows.append(f"| {index + 1} | `{layer_tag(index, name)}` | {type(module).__name__} |")
    return "**The layers of this model**, as the other dashboards number them:\n\n" + "\n".join(rows)

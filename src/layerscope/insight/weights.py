"""Backprop made visible: each layer's weights, biases and gradients, and how much a step changes them.

Every ``every_n_steps`` optimizer steps, just before the step (gradients complete, unscaled under
mixed precision), this logs per named layer: histograms of its weights, biases and their
gradients, the gradient norm, and after the step the update-to-weight ratio ||dW|| / ||W||
(about 1e-3 is the usual healthy size). Gradients that shrink (vanish) or grow (explode) layer by
layer toward the input are what residual connections cure: compare ``model=plain model.depth=56``
with ``model=deep model.depth=56``.

Under fp16 mixed precision the gradients this hook sees can hold inf or NaN: the loss scale was too
large for that step, and the scaler skips the step after the hook. Such gradients (and any weights
that are not finite) get no histogram and no norm; the scalar ``gradients/non_finite_layers``
counts, at each logged step, the layers whose gradients were left out, and the run's log says so
once.
"""

from __future__ import annotations

import logging

import torch
from torch.utils.tensorboard import SummaryWriter

from layerscope.errors import UserError
from layerscope.insight import render
from layerscope.insight.base import Context, View
from layerscope.insight.capture import LayerAnatomy
from layerscope.models.layers import layer_tag

log = logging.getLogger(__name__)

PLURAL = {"weight": "weights", "bias": "biases"}


def finite(*tensors: torch.Tensor) -> bool:
    """Whether every value of every tensor is finite (no inf, no NaN)."""
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def log_histogram(writer: SummaryWriter, tag: str, values: torch.Tensor, step: int, bins: int) -> None:
    """A histogram of finite ``values`` in ``bins`` equal buckets from their minimum to their maximum.

    Counted by torch on the tensor's own device and written as the counts TensorBoard stores:
    about four times faster than ``add_histogram``, which copies to NumPy and counts there
    (measured on ResNet-20's parameters: 0.028 s against 0.10 s for all of them).
    """
    values = values.detach().float().flatten()
    low, high = (v.item() for v in torch.aminmax(values))
    if high == low:  # one value: one bucket around it
        high = low + max(abs(low) * 1e-6, 1e-12)
    counts = torch.histc(values, bins=bins, min=low, max=high)
    edges = torch.linspace(low, high, bins + 1)
    # TensorBoard's layout, as add_histogram writes it: an empty first bucket ending at the minimum,
    # then bucket i from edge i - 1 (included, as NumPy's) up to edge i.
    writer.add_histogram_raw(
        tag, min=low, max=high, num=values.numel(), sum=values.sum().item(),
        sum_squares=values.square().sum().item(), bucket_limits=edges.tolist(),
        bucket_counts=[0.0, *counts.tolist()], global_step=step,
    )


def parameter_role(name: str, param: torch.Tensor) -> str:
    """``weight`` for connection weights, ``bias`` for biases (BatchNorm's shift included), else ``scale``."""
    if name.endswith("bias"):
        return "bias"
    return "weight" if param.ndim > 1 else "scale"


class WeightsAndGradients(View):
    """Histograms ``weights/``, ``biases/``, ``weight_gradients/``, ``bias_gradients/`` and scalars
    ``grad_norm/``, ``update_ratio/`` per layer; a bar chart ``gradients/norm_by_depth`` per epoch."""

    def __init__(self, every_n_steps: int = 100, histograms: bool = True, bins: int = 64) -> None:
        if every_n_steps < 1:
            raise UserError(f"insight.weights.every_n_steps={every_n_steps} must be 1 or more")
        self.every_n_steps, self.histograms, self.bins = every_n_steps, histograms, bins
        self._anatomy: list[LayerAnatomy] = []
        self._before: dict[int, tuple[str, torch.Tensor]] = {}  # layer -> its weight's name, value
        self._norms: dict[int, float] = {}
        self._said_non_finite = False

    def start(self, context: Context) -> None:
        self._anatomy = [a for a in context.anatomy() if a.parameters]

    def before_optimizer_step(self, context: Context) -> None:
        step = context.trainer.global_step
        if step % self.every_n_steps:
            return
        writer = context.writer
        non_finite = 0
        for index, layer in enumerate(self._anatomy):
            tag = layer_tag(index, layer.name)
            grads = [p.grad.detach() for p in layer.parameters.values() if p.grad is not None]
            grads_finite = finite(*grads)
            non_finite += not grads_finite
            if grads and grads_finite:
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
                self._norms[index] = norm.item()
                writer.add_scalar(f"grad_norm/{tag}", self._norms[index], step)
            for name, param in layer.parameters.items():
                role = parameter_role(name, param)
                if role == "weight":  # the layer's own weight: the last one that runs before its output
                    self._before[index] = (name, param.detach().clone())
                if self.histograms and role != "scale":
                    self._histograms(writer, tag, role, param, step)
        writer.add_scalar("gradients/non_finite_layers", non_finite, step)
        if non_finite and not self._said_non_finite:
            log.warning(
                "weights: at step %d the gradients of %d layer(s) were not finite (under fp16 the scaler "
                "skips such a step); they get no histogram or norm, counted in gradients/non_finite_layers",
                step, non_finite,
            )
            self._said_non_finite = True

    def _histograms(self, writer: SummaryWriter, tag: str, role: str, param: torch.Tensor, step: int) -> None:
        values = param.detach()
        if finite(values):  # a histogram's range must be finite
            log_histogram(writer, f"{PLURAL[role]}/{tag}", values, step, self.bins)
        if param.grad is not None:
            grad = param.grad.detach()
            if finite(grad):
                log_histogram(writer, f"{role}_gradients/{tag}", grad, step, self.bins)

    def after_train_batch(self, context: Context) -> None:
        if not self._before:
            return
        writer = context.writer
        step = context.trainer.global_step - 1  # the step whose update this was
        for index, (name, before) in self._before.items():
            layer = self._anatomy[index]
            weight = layer.parameters[name]
            ratio = torch.linalg.vector_norm(weight.detach() - before) / torch.linalg.vector_norm(before)
            writer.add_scalar(f"update_ratio/{layer_tag(index, layer.name)}", ratio.item(), step)
        self._before.clear()

    def after_train_epoch(self, context: Context) -> None:
        if not self._norms:
            return
        names = [layer_tag(i, a.name) for i, a in enumerate(self._anatomy)]
        values = [self._norms.get(i, 0.0) for i in range(len(names))]
        figure, axes = render.new_figure(max(6.0, 0.35 * len(names)), 4.0)
        axes.bar(range(len(names)), values, color="C3")
        axes.set_yscale("log")
        axes.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
        axes.set_xlabel("layer (input side -> output side)")
        axes.set_ylabel("gradient norm (log scale)")
        axes.set_title(f"Gradient reaching each layer, step {context.trainer.global_step}")
        context.log_figure("gradients/norm_by_depth", figure)

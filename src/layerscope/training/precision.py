"""Which arithmetic a run trains in: ``trainer.precision=auto`` picks it from the hardware.

bf16 mixed precision (autocast to bfloat16, fp32 master weights) is fast where the hardware has
bf16 units: a GPU that supports bf16, a CPU with AMX or AVX512-BF16. fp16 mixed precision (with
loss scaling) is the fast choice on a GPU without bf16. Everywhere else fp32: without bf16 units a
CPU emulates bf16 and trains slower than in fp32. Any explicit value (``32-true``,
``bf16-mixed``, ...) is used as given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from layerscope.training.hardware import cpu_flags, cpu_name

log = logging.getLogger(__name__)

AUTO = "auto"
CPU_BF16_UNITS = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16"}  # Linux flag -> the units' name


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run trains in, and in one clause why."""

    precision: str  # a value of Lightning's Trainer(precision=...)
    reason: str


def choose_precision(
    requested: str | int, on_gpu: bool, gpu_bf16: bool, flags: frozenset[str], processor: str = "this CPU",
) -> PrecisionChoice:
    """The precision for ``requested`` on this hardware (described, not queried: see :func:`resolve`)."""
    if str(requested) != AUTO:
        return PrecisionChoice(str(requested), "as set in trainer.precision")
    if on_gpu:
        if gpu_bf16:
            return PrecisionChoice("bf16-mixed", "auto: the GPU computes in bf16")
        return PrecisionChoice("16-mixed", "auto: the GPU has no bf16, fp16 with loss scaling instead")
    units = [name for flag, name in CPU_BF16_UNITS.items() if flag in flags]
    if units:
        return PrecisionChoice("bf16-mixed", f"auto: {processor} has bf16 units ({', '.join(units)})")
    return PrecisionChoice("32-true", f"auto: {processor} has no bf16 units (AMX, AVX512-BF16), so fp32")


def resolve(requested: str | int, accelerator: str) -> PrecisionChoice:
    """The precision for ``requested`` with ``trainer.accelerator`` on this machine."""
    on_gpu = str(accelerator) in ("gpu", "cuda") or (str(accelerator) == "auto" and torch.cuda.is_available())
    gpu_bf16 = on_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    choice = choose_precision(requested, on_gpu, gpu_bf16, cpu_flags(), cpu_name())
    log.info("Precision: %s (%s)", choice.precision, choice.reason)
    return choice

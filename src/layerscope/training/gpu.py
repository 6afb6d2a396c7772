"""What a run does differently on a CUDA GPU: fp32 arithmetic, the compiler's needs, memory.

On a CPU every function here leaves the process as it is, so CPU runs stay as they were.
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from layerscope.errors import UserError

log = logging.getLogger(__name__)

FLOAT32_PRECISIONS = ("highest", "high", "medium")
# torch.compile's GPU code generator, Triton, needs a GPU of compute capability 7.0 (Volta) or newer.
TRITON_MIN_CAPABILITY = (7, 0)


def set_float32_precision(choice: str, device: torch.device) -> str | None:
    """Set how fp32 matrix products and convolutions compute on a CUDA ``device``; return the choice.

    ``high`` (and ``medium``) let GPUs with TensorFloat-32 units (Ampere and newer) multiply fp32
    tensors in TF32: inputs rounded to a 10-bit mantissa, sums kept in fp32, several times faster.
    PyTorch already does so for convolutions and not for matrix products; ``high`` makes both the
    same, ``highest`` keeps both in full fp32. Under bf16 or fp16 mixed precision it concerns only
    what autocast leaves in fp32. On a CPU nothing is set (None): PyTorch's ``high`` would also
    switch the CPU's oneDNN matrix products to TF32 where the processor has such units.
    """
    if choice not in FLOAT32_PRECISIONS:
        raise UserError(f"float32_matmul_precision={choice!r}: choose one of {', '.join(FLOAT32_PRECISIONS)}")
    if device.type != "cuda":
        return None
    torch.set_float32_matmul_precision(choice)
    torch.backends.cudnn.allow_tf32 = choice != "highest"
    log.info("fp32 on the GPU: float32_matmul_precision=%s (%s)", choice,
             "full fp32" if choice == "highest" else "TF32 where the GPU has it")
    return choice


def check_compile(compile: bool, device: torch.device) -> None:
    """One clear line, before training starts, where ``module.compile=true`` cannot work on ``device``."""
    if not compile or device.type != "cuda":
        return
    if importlib.util.find_spec("triton") is None:
        raise UserError("module.compile=true on a GPU needs Triton, which is not installed: "
                        "pip install triton, or train with module.compile=false")
    capability = torch.cuda.get_device_capability(device)
    if capability < TRITON_MIN_CAPABILITY:
        name, needed = torch.cuda.get_device_name(device), ".".join(map(str, TRITON_MIN_CAPABILITY))
        raise UserError(
            f"module.compile=true: Triton does not support {name} (compute capability "
            f"{capability[0]}.{capability[1]}, it needs {needed} or newer); train with module.compile=false"
        )


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished the work queued on it: a GPU runs after the host queues
    its kernels, so a clock read without this times the queueing. A CPU has nothing to wait for."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float | None:
    """The most GPU memory this process's tensors held on ``device`` (GiB), None off the GPU."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)

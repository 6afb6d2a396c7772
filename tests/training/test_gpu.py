"""What a run does only on a GPU, checked on the CPU with the GPU's answers faked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from layerscope.errors import UserError
from layerscope.training import gpu

CUDA = torch.device("cuda", 0)  # a device object needs no GPU; nothing here runs on it


@pytest.fixture
def float32_settings() -> Iterator[None]:
    """Whatever a test sets, the process's fp32 settings are as before afterwards."""
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    yield
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cudnn.allow_tf32 = cudnn


def test_fp32_precision_is_set_for_a_gpu_and_left_alone_on_a_cpu(float32_settings: None) -> None:
    torch.set_float32_matmul_precision("highest")
    assert gpu.set_float32_precision("high", torch.device("cpu")) is None
    assert torch.get_float32_matmul_precision() == "highest"  # a CPU run computes as before
    assert gpu.set_float32_precision("high", CUDA) == "high"
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
    assert gpu.set_float32_precision("highest", CUDA) == "highest"
    assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
    with pytest.raises(UserError, match="float32_matmul_precision='tf32': choose one of highest, high"):
        gpu.set_float32_precision("tf32", torch.device("cpu"))


def test_compile_on_a_gpu_triton_cannot_serve_ends_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu.check_compile(True, torch.device("cpu"))  # the CPU compiles without Triton
    gpu.check_compile(False, CUDA)  # nothing to compile
    monkeypatch.setattr(gpu.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="needs Triton, which is not installed"):
        gpu.check_compile(True, CUDA)
    monkeypatch.setattr(gpu.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Tesla P100")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (6, 0))
    with pytest.raises(UserError, match=r"not support Tesla P100 \(compute capability 6.0, it needs 7.0"):
        gpu.check_compile(True, CUDA)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (8, 0))
    gpu.check_compile(True, CUDA)  # an A100: fine


def test_peak_memory_is_read_on_the_gpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu.peak_memory_gib(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 3 * 2**29)
    assert gpu.peak_memory_gib(CUDA) == 1.5


def test_timings_wait_for_the_gpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "synchronize", waited.append)
    gpu.synchronize(torch.device("cpu"))
    assert waited == []  # nothing queued on a CPU
    gpu.synchronize(CUDA)
    assert waited == [CUDA]

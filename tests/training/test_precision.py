"""trainer.precision=auto: bf16 where the hardware has bf16 units, fp16 on older GPUs, fp32 elsewhere."""

from __future__ import annotations

import pytest

from layerscope.training.precision import choose_precision

NO_UNITS = frozenset({"avx2", "avx512f"})


@pytest.mark.parametrize(("flags", "expected"), [
    (frozenset({"avx512f", "amx_bf16", "amx_tile", "avx512_bf16"}), "bf16-mixed"),  # Intel Xeon with AMX
    (frozenset({"avx512f", "avx512_bf16"}), "bf16-mixed"),  # AMD EPYC (Zen 4)
    (NO_UNITS, "32-true"),  # AVX-512 without bf16 (Skylake): bf16 would be emulated
    (frozenset(), "32-true"),  # no /proc/cpuinfo (macOS, Windows)
])
def test_auto_on_a_cpu_uses_bf16_only_with_bf16_units(flags: frozenset[str], expected: str) -> None:
    choice = choose_precision("auto", on_gpu=False, gpu_bf16=False, flags=flags, processor="Some CPU")
    assert choice.precision == expected
    assert choice.reason.startswith("auto: Some CPU has")


def test_auto_on_a_gpu_uses_bf16_where_it_computes_it_else_fp16() -> None:
    assert choose_precision("auto", on_gpu=True, gpu_bf16=True, flags=NO_UNITS).precision == "bf16-mixed"
    older = choose_precision("auto", on_gpu=True, gpu_bf16=False, flags=frozenset({"avx512_bf16"}))
    assert older.precision == "16-mixed" and "loss scaling" in older.reason


@pytest.mark.parametrize("requested", ["32-true", "bf16-mixed", 32, "16-mixed"])
def test_an_explicit_precision_always_wins(requested: str | int) -> None:
    choice = choose_precision(requested, on_gpu=True, gpu_bf16=True, flags=frozenset({"amx_bf16"}))
    assert choice.precision == str(requested) and choice.reason == "as set in trainer.precision"

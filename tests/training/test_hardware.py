"""The machine's description: processor name and bf16 units from /proc/cpuinfo, or what Python knows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from layerscope.training import hardware

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni

processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
"""


@pytest.fixture
def cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "cpuinfo"
    monkeypatch.setattr(hardware, "CPUINFO", path)
    hardware.cpu_name.cache_clear()
    hardware.cpu_flags.cache_clear()
    yield path
    hardware.cpu_name.cache_clear()
    hardware.cpu_flags.cache_clear()


def test_the_processor_is_named_with_its_bf16_units(cpuinfo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo.write_text(EPYC)
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 2)
    assert hardware.cpu_name() == "AMD EPYC"
    assert {"avx512f", "avx512_bf16"} <= hardware.cpu_flags() and "amx_bf16" not in hardware.cpu_flags()
    assert hardware.machine_line() == "AMD EPYC, 2 cores (AVX-512, AVX512-BF16)"


def test_a_processor_with_avx2_only_says_so(cpuinfo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo.write_text(EPYC.replace(" avx512f avx512_bf16 avx512_vnni", ""))
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 2)
    assert hardware.machine_line() == "AMD EPYC, 2 cores (AVX2 only: no AVX-512, no bf16 units)"


def test_without_cpuinfo_the_architecture_names_it(cpuinfo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware.platform, "processor", lambda: "")
    monkeypatch.setattr(hardware.platform, "machine", lambda: "arm64")
    assert hardware.cpu_name() == "arm64"
    assert hardware.cpu_flags() == frozenset()

"""What the machine is: the processor's name and instruction-set flags, for records and choices.

Shared virtual machines change processor from one day to the next, so a measurement names the
processor it ran on (``cpu_name``), and what runs fast depends on its units (``cpu_flags``).
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_field(name: str) -> str | None:
    """The first value of ``name`` in /proc/cpuinfo (Linux), or None where there is none."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


@cache
def cpu_name() -> str:
    """The processor's model name ("AMD EPYC", "Intel(R) Xeon(R) ..."), or the architecture."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


@cache
def cpu_flags() -> frozenset[str]:
    """The processor's instruction-set flags as Linux reports them (empty elsewhere)."""
    return frozenset((_cpuinfo_field("flags") or "").split())


def machine_line() -> str:
    """One line naming the machine for a benchmark's output: processor, cores, AVX-512, bf16 units."""
    flags = cpu_flags()
    units = [name for flag, name in (("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"),
                                     ("amx_bf16", "AMX")) if flag in flags]
    if not units and "avx2" in flags:  # most laptop processors: say so, figures differ by 2x or more
        units = ["AVX2 only: no AVX-512, no bf16 units"]
    return f"{cpu_name()}, {os.cpu_count()} cores" + (f" ({', '.join(units)})" if units else "")

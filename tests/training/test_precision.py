"""trainer.precision=auto: bf16 where the hardware has bf16 units, fp16 on older GPUs, fp32 elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from layerscope.training.precision import choose_precision, resolve
from tests.insight.conftest import SMALL_INSIGHT, _train

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


def test_a_bf16_run_keeps_fp32_weights_records_its_precision_and_draws_its_views(
    tmp_path: Path, data_dir: Path
) -> None:
    metrics = _train(tmp_path, data_dir, "trainer.precision=bf16-mixed", "trainer.max_epochs=1",
                     *SMALL_INSIGHT)
    recorded = json.loads((tmp_path / "metrics.json").read_text())
    assert recorded["precision"] == "bf16-mixed"
    assert recorded["precision_reason"] == "as set in trainer.precision"
    assert metrics["precision"] == "bf16-mixed"
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float32}
    assert (tmp_path / "layer_story.png").exists()  # the views drew under bf16


def test_auto_records_what_it_chose_on_this_machine(tmp_path: Path, data_dir: Path) -> None:
    metrics = _train(tmp_path, data_dir, "trainer.precision=auto", "trainer.max_epochs=1", "insight=off")
    expected = resolve("auto", "cpu")
    assert (metrics["precision"], metrics["precision_reason"]) == (expected.precision, expected.reason)

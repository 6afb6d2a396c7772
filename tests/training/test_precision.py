"""trainer.precision=auto: bf16 where the hardware has bf16 units, fp16 on older GPUs, fp32 elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from layerscope.training.precision import choose_precision, resolve
from tests.conftest import CONF
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


def test_a_bf16_run_keeps_fp32_weights_records_its_precision_and_its_views_change_nothing(
    tmp_path: Path, data_dir: Path
) -> None:
    runs = {choice: tmp_path / choice for choice in ("default", "off")}
    bf16 = ["trainer.precision=bf16-mixed", "trainer.max_epochs=1"]
    metrics = _train(runs["default"], data_dir, *bf16, *SMALL_INSIGHT)
    _train(runs["off"], data_dir, *bf16, "insight=off")
    recorded = json.loads((runs["default"] / "metrics.json").read_text())
    assert recorded["precision"] == "bf16-mixed"
    assert recorded["precision_reason"] == "as set in trainer.precision"
    assert metrics["precision"] == "bf16-mixed"
    states = [torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
              for run in runs.values()]
    assert {t.dtype for t in states[0].values() if t.is_floating_point()} == {torch.float32}
    assert (runs["default"] / "layer_story.png").exists()  # the views drew under bf16
    different = [key for key in states[0] if not torch.equal(states[0][key], states[1][key])]
    assert not different, f"the views changed a bf16 run: {different[:5]}"


def test_the_default_precision_is_auto() -> None:
    config = OmegaConf.load(CONF / "trainer" / "default.yaml")
    assert config.precision == "auto"


def test_auto_records_what_it_chose_on_this_machine(tmp_path: Path, data_dir: Path) -> None:
    metrics = _train(tmp_path, data_dir, "trainer.precision=auto", "trainer.max_epochs=1", "insight=off")
    expected = resolve("auto", "cpu")
    assert (metrics["precision"], metrics["precision_reason"]) == (expected.precision, expected.reason)

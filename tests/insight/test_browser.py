"""TensorBoard in a real browser: feature maps of the first, a middle and the last layer; the dissection."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REPO

BROWSER = os.environ.get("CHROMIUM") or shutil.which("chromium")

pytestmark = [
    # Developers without Chromium skip this; CI (which installs it with `make test`) never does.
    pytest.mark.skipif(
        BROWSER is None and not os.environ.get("CI"), reason="needs Debian's chromium (make test installs it)"
    ),
    # Run alone, it also pays for the two trainings of the session's `runs` fixture before its own
    # browser, which may take up to 300 s: more room than the suite's default.
    pytest.mark.timeout(1200),
]


def test_tensorboard_renders_the_layer_views(runs: dict[str, Path], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "docs" / "screenshots.py"), str(runs["default"]), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["feature_maps"]["images"] == {
        "feature_maps/01_stem": 2 + 17 * 34,  # the image and 16 channels, 34 pixels a tile
        "feature_maps/05_stage2.block1.conv2": 2 + 17 * 34,  # a middle layer: its first 16 channels
        "feature_maps/08_fc": 2 + 2 * 34,  # the image and the output neurons' square
    }
    dissection = {"dissection/detectors_by_depth", "dissection/best_detectors"}
    assert set(summary["dissection"]["images"]) == dissection
    for view in ("top_patches", "filters_and_probes", "mistakes", "dissection"):
        assert all(width > 0 for width in summary[view]["images"].values()), view
    for view in summary.values():
        with Image.open(view["file"]) as screenshot:
            assert screenshot.size == (1280, 860)
            # A page of real content, not a blank or error page: many colours, none filling it.
            colours = screenshot.convert("RGB").getcolors(maxcolors=1 << 20) or []
            assert len(colours) > 50
            assert max(count for count, _ in colours) < 0.9 * 1280 * 860

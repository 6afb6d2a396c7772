"""Open a run in TensorBoard in headless Chromium, check the layer views render, save screenshots.

    python docs/screenshots.py outputs/2026-11-26/10-00-00_deep_shapes --out docs/

Starts ``tensorboard --logdir RUN`` on 127.0.0.1, opens the IMAGES dashboard filtered to each
view below, waits until every image of the view has loaded, and saves one PNG per view. Prints a
JSON summary (the rendered image tags and their pixel widths) and exits non-zero if the first and
last layers' feature maps do not render. Needs Playwright (``pip install playwright``) and a
Chromium (Debian's ``chromium`` package, or set CHROMIUM=/path/to/chrome).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from PIL import Image
from playwright.sync_api import Page, sync_playwright


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def tensorboard(run_dir: Path, timeout: float = 60.0) -> Iterator[str]:
    """A TensorBoard server on a free local port; yields its URL and stops it afterwards."""
    port = free_port()
    executable = Path(sys.executable).with_name("tensorboard")
    server = subprocess.Popen(
        [str(executable), "--logdir", str(run_dir), "--host", "127.0.0.1", "--port", str(port),
         "--samples_per_plugin", "images=100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/data/runs", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"TensorBoard did not start on {url}") from None
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def image_tags(url: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/data/plugin/images/tags", timeout=10) as response:
        runs = json.load(response)
    return sorted({tag for tags in runs.values() for tag in tags})


def shown_images(page: Page) -> dict[str, int]:
    """Tag -> natural pixel width of each image on the page (0 if it has not loaded)."""
    found = page.eval_on_selector_all(
        "img[src*='individualImage']", "images => images.map(i => [i.src, i.complete ? i.naturalWidth : 0])"
    )
    shown = {}
    for src, width in found:
        key = src.split("blob_key=")[1].split("&")[0]
        tag = json.loads(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)))[2]
        shown[tag] = max(width, shown.get(tag, 0))
    return shown


def capture(page: Page, url: str, tags: list[str], path: Path, timeout: float = 60.0) -> dict[str, int]:
    """Show ``tags`` in the IMAGES dashboard, wait until all have loaded, save a screenshot."""
    pattern = "^(" + "|".join(t.replace(".", "\\.") for t in tags) + ")$"
    page.goto(f"{url}/#images&tagFilter={quote(pattern, safe='')}")
    deadline = time.monotonic() + timeout
    shown: dict[str, int] = {}
    while time.monotonic() < deadline:
        shown = shown_images(page)
        if all(shown.get(tag, 0) > 0 for tag in tags):
            break
        time.sleep(0.5)
    page.screenshot(path=str(path))
    with Image.open(path) as shot:  # 256 colours: a quarter of the bytes, no visible change
        shot.convert("RGB").quantize(256).save(path, optimize=True)
    return {tag: shown.get(tag, 0) for tag in tags}


def views(tags: list[str]) -> dict[str, list[str]]:
    """The screenshots to take: name -> image tags (first, middle and last layer where there are layers)."""
    def ends(prefix: str) -> list[str]:
        layer_tags = sorted(t for t in tags if t.startswith(prefix))
        return list(dict.fromkeys([layer_tags[0], layer_tags[len(layer_tags) // 2], layer_tags[-1]])) \
            if layer_tags else []

    wanted = {
        "feature_maps": ends("feature_maps/"),
        "top_patches": ends("top_patches/"),
        "filters_and_probes": [t for t in ("filters/layer1", "probe/accuracy_vs_depth") if t in tags],
        "mistakes": [t for t in ("mistakes/confusion_matrix", "mistakes/misclassified") if t in tags],
        "dissection": [t for t in ("dissection/detectors_by_depth", "dissection/best_detectors")
                       if t in tags],
    }
    return {name: wanted_tags for name, wanted_tags in wanted.items() if wanted_tags}


def chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise SystemExit("error: no Chromium found: install Debian's `chromium` or set CHROMIUM=/path")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (or any folder of runs)")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where the PNGs go")
    parser.add_argument("--width", type=int, default=1280, help="browser window width")
    parser.add_argument("--height", type=int, default=860, help="browser window height")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    with tensorboard(args.run_dir) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        for name, tags in views(image_tags(url)).items():
            path = args.out / f"tensorboard_{name}.png"
            summary[name] = {"file": str(path), "images": capture(page, url, tags, path)}
        browser.close()
    print(json.dumps(summary, indent=2))
    feature_maps = summary.get("feature_maps", {}).get("images", {})
    return 0 if len(feature_maps) >= 2 and all(feature_maps.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

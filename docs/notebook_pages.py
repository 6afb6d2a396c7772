"""The teaching notebooks as web pages with their outputs: docs/notebooks/<name>.html.

    make notebook-pages                         # every notebook, full settings (tens of minutes on 2 cores)
    python docs/notebook_pages.py notebooks/01_neurons_weights_biases.ipynb

Each notebook is executed as a learner would run it (full settings, its runs under
outputs/notebooks/, data under data/), then converted to HTML by nbconvert. The page records the
digest of the notebook's cells it was made from, so a test can tell a page that no longer matches
its notebook (``source_digest``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "docs" / "notebooks"
DIGEST_MARK = "layerscope-notebook-source-digest:"


def source_digest(notebook_path: Path) -> str:
    """SHA-256 of the notebook's cells (their kinds and sources): what a page must be made from."""
    cells = json.loads(notebook_path.read_text())["cells"]
    content = json.dumps([[c["cell_type"], "".join(c["source"])] for c in cells], ensure_ascii=False)
    return hashlib.sha256(content.encode()).hexdigest()


def page_path(notebook_path: Path) -> Path:
    return PAGES / f"{notebook_path.stem}.html"


def recorded_digest(page: Path) -> str | None:
    """The digest a page says it was made from; None for a page without one."""
    for line in page.read_text().splitlines():
        if DIGEST_MARK in line:
            return line.split(DIGEST_MARK, 1)[1].split()[0]
    return None


def publish(notebook_path: Path) -> Path:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    digest = source_digest(notebook_path)  # of what runs: an edit while it runs makes the page stale
    notebook = nbformat.read(notebook_path, as_version=4)
    environment = {"LAYERSCOPE_OUTPUT_DIR": str(REPO / "outputs" / "notebooks"),
                   "LAYERSCOPE_DATA_DIR": str(REPO / "data")}
    os.environ.update(environment)
    for name in ("LAYERSCOPE_NOTEBOOK_SMALL", "LAYERSCOPE_CKPT", "MPLBACKEND"):
        os.environ.pop(name, None)  # the full settings, the notebook's own model, the inline plots
    NotebookClient(notebook, timeout=3600, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook_path.parent)}}).execute()
    body, _ = HTMLExporter().from_notebook_node(notebook)
    mark = f"<!-- {DIGEST_MARK} {digest} (made from {notebook_path.name}) -->\n"
    page = page_path(notebook_path)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(mark + body)
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    args = parser.parse_args()
    for notebook_path in args.notebooks or sorted((REPO / "notebooks").glob("*.ipynb")):
        started = time.perf_counter()
        page = publish(notebook_path.resolve())
        print(f"{page.relative_to(REPO)}: {page.stat().st_size / 1e6:.1f} MB, "
              f"{time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()

"""The teaching notebooks: stored without outputs, and each runs top to bottom without an error; the
hand computation of a layer-1 neuron equals the value in the network's feature map; every figure is
followed by its reading, in numbers from the run; notebook 02 shows its run's layer story; each ends with
exercises; each published page (docs/notebooks/) is made from the notebook as it is now."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert [n.name for n in NOTEBOOKS] == [
        "01_neurons_weights_biases.ipynb", "02_inside_a_cnn.ipynb", "03_why_deep_and_why_now.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path: Path) -> None:
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(
    path: Path, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAYERSCOPE_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("LAYERSCOPE_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("LAYERSCOPE_DATA_DIR", str(data_dir))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, as in Jupyter
    monkeypatch.delenv("LAYERSCOPE_CKPT", raising=False)
    notebook = nbformat.read(path, as_version=4)
    # Runs in the notebooks/ folder as a learner's Jupyter would; a failing cell raises here.
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    figures = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
               if "image/png" in o.get("data", {})]
    assert figures, "the notebook drew no figure"
    for cell in notebook.cells:  # every cell that shows a figure shows it (no backend switched off)
        if cell.cell_type == "code" and "plt.show()" in cell.source and "if shown:" not in cell.source:
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source[:200]
    for cell in notebook.cells:  # and below every figure, what to look for and what this run measured
        kinds = [kind for o in cell.get("outputs", []) for kind in o.get("data", {})
                 if kind in ("image/png", "text/markdown")]
        if "image/png" in kinds:
            assert "text/markdown" in kinds[kinds.index("image/png"):], cell.source[:200]
            reading = [o["data"]["text/markdown"] for o in cell.outputs
                       if "text/markdown" in o.get("data", {})][-1]
            assert "**This run" in reading and any(ch.isdigit() for ch in reading), reading
            assert "{" not in reading, reading  # an f-string that lost its f shows its braces
    story = [c for c in notebook.cells if c.cell_type == "code" and "layer_story.png" in c.source]
    assert len(story) == (path.stem == "02_inside_a_cnn")
    for cell in story:  # the layer story of the run that trained the notebook's model, with its numbers
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), "no layer story drawn"
    by_hand = [c for c in notebook.cells if "neuron-arithmetic" in c.metadata.get("tags", [])]
    assert len(by_hand) == (path.stem == "02_inside_a_cnn")
    for cell in by_hand:
        text = "".join(o.get("text", "") for o in cell.outputs)
        difference = float(text.split("hand computation minus feature map:")[1].split()[0])
        assert difference < 1e-4, text  # the 27 products, BatchNorm and ReLU by hand: the network's value
    assert not (REPO / "notebooks" / "outputs").exists()  # runs went to LAYERSCOPE_OUTPUT_DIR


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_ends_with_exercises_whose_answers_are_folded(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    heading = next(i for i, c in enumerate(cells) if "".join(c["source"]).startswith("## Exercises"))
    answers = [c for c in cells[heading:] if "answer" in c.get("metadata", {}).get("tags", [])]
    assert 2 <= len(answers) <= 3 and len(cells[heading + 1 :]) == 2 * len(answers)
    for answer in answers:
        assert "".join(answer["source"]).startswith("<details><summary>Answer</summary>")


def _pages_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("notebook_pages", REPO / "docs" / "notebook_pages.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_published_page_is_made_from_the_notebook_as_it_is(path: Path) -> None:
    pages = _pages_module()
    page = pages.page_path(path)
    assert page.is_file(), f"no {page.name}: run make notebook-pages"
    assert pages.recorded_digest(page) == pages.source_digest(path), \
        f"{page.name} was made from another version of {path.name}: run make notebook-pages"
    html = page.read_text()
    assert html.count("data:image/png;base64") >= 2  # published with its figures


def test_the_digest_changes_with_any_cell(tmp_path: Path) -> None:
    pages = _pages_module()
    original = NOTEBOOKS[0]
    changed = tmp_path / original.name
    notebook = json.loads(original.read_text())
    notebook["cells"][-1]["source"] = ["an edited answer"]
    changed.write_text(json.dumps(notebook))
    assert pages.source_digest(changed) != pages.source_digest(original)
    (tmp_path / "page.html").write_text(f"<!-- {pages.DIGEST_MARK} abc123 (made from x) -->\n<html>")
    assert pages.recorded_digest(tmp_path / "page.html") == "abc123"

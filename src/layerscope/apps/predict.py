"""``python predict.py ckpt_path=... input=...``: one JSON object (or CSV row) per image.

Images are decoded ``batch_size`` at a time (:class:`layerscope.inference.predict.FolderPrediction`),
so a folder of any size runs in bounded memory.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from layerscope.apps.cli import note, run_hydra
from layerscope.errors import UserError
from layerscope.inference import Classifier, image_files, load_classifier
from layerscope.inference.predict import FolderPrediction, ImagePrediction, explanation_folder, write_csv


def predict(cfg: DictConfig) -> int:
    """Predict every readable image under ``cfg.input``; return how many were predicted."""
    if cfg.output is not None and not str(cfg.output).endswith(".csv"):
        raise UserError(f"output={cfg.output} must end in .csv (or leave it out for JSON on stdout)")
    clf = load_classifier(cfg.ckpt_path, cfg.device, say=note)
    root = Path(cfg.input).expanduser()
    if not root.exists():
        raise UserError(f"input={root} does not exist: pass an image file or a folder of images")
    files = image_files(root)
    if not files:
        raise UserError(f"input={root} holds no files: put images in it")
    predictions = FolderPrediction(clf, files, cfg.batch_size, cfg.top_k)
    results: Iterable[ImagePrediction] = predictions
    if cfg.explain:
        results = _explained(clf, results, root, Path(cfg.out_dir))
    records = (result.record() for result in results)
    if cfg.output is None:
        count = _print_json_lines(records)
    else:
        count = write_csv(records, Path(cfg.output))
        print(f"wrote {count} predictions to {cfg.output}", file=sys.stderr)
    for reason in predictions.unreadable:
        print(f"skipped {reason}", file=sys.stderr)
    return count


def _print_json_lines(records: Iterable[dict[str, Any]]) -> int:
    count = 0
    for record in records:
        print(json.dumps(record), flush=True)
        count += 1
    return count


def _explained(
    clf: Classifier, results: Iterable[ImagePrediction], root: Path, out_dir: Path
) -> Iterator[ImagePrediction]:
    """Pass each result on after writing its explanation under ``out_dir``."""
    from layerscope.inference.explain import explain_image  # Captum and matplotlib only when asked for

    for result in results:
        folder = explanation_folder(out_dir, root, result.path)
        explain_image(clf, result.image, result.index, folder, result.record())
        print(f"explained {result.path} in {folder}", file=sys.stderr)
        yield result


def main(config_dir: Path | None = None) -> Any:
    """Console entry point ``layerscope-predict`` (and ``python predict.py``)."""
    return run_hydra(predict, config_name="predict", config_dir=config_dir)

"""``python predict.py ckpt_path=... input=...``: one JSON object (or CSV row) per image."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from layerscope.apps.cli import run_hydra
from layerscope.data.imagefolder import UnreadableImage
from layerscope.errors import UserError
from layerscope.inference import Classifier, image_files, load_classifier


def read_images(clf: Classifier, root: Path) -> tuple[list[tuple[Path, torch.Tensor]], list[str]]:
    """The readable images under ``root`` (converted and resized) and a reason for each bad file."""
    if not root.exists():
        raise UserError(f"input={root} does not exist: pass an image file or a folder of images")
    files = image_files(root)
    if not files:
        raise UserError(f"input={root} holds no files: put images in it")
    good, bad = [], []
    for path in files:
        try:
            good.append((path, clf.load(path)))
        except UnreadableImage as err:
            bad.append(str(err))
    if not good:
        raise UserError(f"no readable image in input={root}: " + "; ".join(bad[:5]))
    return good, bad


def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    """Predict every readable image under ``cfg.input``; return the records it wrote."""
    clf = load_classifier(cfg.ckpt_path, cfg.device)
    images, bad = read_images(clf, Path(cfg.input).expanduser())
    batch = torch.stack([image for _, image in images])
    predictions = clf.predict(batch, batch_size=cfg.batch_size)
    records = [
        {"path": str(path), "label": top[0][0], "prob": round(top[0][1], 6),
         "top_k": [[label, round(prob, 6)] for label, prob in top]}
        for (path, _), top in zip(images, predictions.top_k(cfg.top_k), strict=True)
    ]
    _write(records, cfg.output)
    for reason in bad:
        print(f"skipped {reason}", file=sys.stderr)
    if cfg.explain:
        from layerscope.inference.explain import explain_image  # Captum and matplotlib only when asked for

        for (path, image), label in zip(images, predictions.indices.tolist(), strict=True):
            folder = Path(cfg.out_dir) / path.stem
            explain_image(clf, image, label, folder)
            print(f"explained {path} in {folder}", file=sys.stderr)
    return records


def _write(records: list[dict[str, Any]], output: str | None) -> None:
    if output is None:
        for record in records:
            print(json.dumps(record), flush=True)
        return
    if not str(output).endswith(".csv"):
        raise UserError(f"output={output} must end in .csv (or leave it out for JSON on stdout)")
    with open(output, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "label", "prob", "top_k"])
        for r in records:
            top = ";".join(f"{label}:{prob}" for label, prob in r["top_k"])
            writer.writerow([r["path"], r["label"], r["prob"], top])
    print(f"wrote {len(records)} predictions to {output}", file=sys.stderr)


def main(config_dir: Path | None = None) -> Any:
    """Console entry point ``layerscope-predict`` (and ``python predict.py``)."""
    return run_hydra(predict, config_name="predict", config_dir=config_dir)

"""Predict a folder of any size in bounded memory: ``batch_size`` images decoded at a time.

Only the list of file names is held whole; each batch is decoded, predicted and handed on (to
stdout, a CSV, explanations) before the next is read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from layerscope.data.image_files import UnreadableImage
from layerscope.errors import UserError
from layerscope.files import write_atomically
from layerscope.inference.loading import Classifier


@dataclass(frozen=True)
class ImagePrediction:
    """One image's prediction, with the image as the model saw it (for explanations)."""

    path: Path
    image: torch.Tensor  # uint8 (C, H, W), converted and resized
    index: int  # the predicted class
    top_k: list[tuple[str, float]]  # most likely classes first
    ood_score: float  # the calibration's out-of-distribution score: higher is less like the training data
    in_distribution: bool | None  # the score within the calibrated threshold; None if uncalibrated

    def record(self) -> dict[str, Any]:
        """The plain record written out: path, label, its probability, the top k, and the
        out-of-distribution score with its flag."""
        return {"path": str(self.path), "label": self.top_k[0][0], "prob": round(self.top_k[0][1], 6),
                "top_k": [[label, round(prob, 6)] for label, prob in self.top_k],
                "ood_score": round(self.ood_score, 4), "in_distribution": self.in_distribution}


class FolderPrediction:
    """Iterating predicts ``files`` batch by batch; ``unreadable`` collects why each bad file was skipped.

    A UserError ends the iteration if not one file could be read.
    """

    def __init__(self, clf: Classifier, files: list[Path], batch_size: int = 64, top_k: int = 3) -> None:
        self.clf = clf
        self.files = files
        self.batch_size = batch_size
        self.top_k = top_k
        self.unreadable: list[str] = []

    def __iter__(self) -> Iterator[ImagePrediction]:
        self.unreadable = []
        for start in range(0, len(self.files), self.batch_size):
            paths, images = self._decode(self.files[start : start + self.batch_size])
            if not images:
                continue
            predictions = self.clf.predict(torch.stack(images), batch_size=self.batch_size)
            flags = predictions.in_distribution
            flag_list = [None] * len(paths) if flags is None else flags.tolist()
            for path, image, index, top, score, flag in zip(
                paths, images, predictions.indices.tolist(), predictions.top_k(self.top_k),
                predictions.ood_scores.tolist(), flag_list, strict=True,
            ):
                yield ImagePrediction(path, image, index, top, score, flag)
        if len(self.unreadable) == len(self.files):
            raise UserError(f"no readable image among {len(self.files)} file(s): "
                            + "; ".join(self.unreadable[:5]))

    def _decode(self, files: list[Path]) -> tuple[list[Path], list[torch.Tensor]]:
        paths, images = [], []
        for path in files:
            try:
                images.append(self.clf.load(path))
                paths.append(path)
            except UnreadableImage as err:
                self.unreadable.append(str(err))
        return paths, images


def explanation_folder(out_dir: Path, root: Path, image: Path) -> Path:
    """``out_dir`` / the image's path under the input root, file extension kept.

    So a/cat.png, b/cat.png and a/cat.jpg each get their own folder; a single file given as the
    input gets a folder named after it.
    """
    relative = image.relative_to(root) if root.is_dir() else Path(image.name)
    return out_dir / relative


def write_csv(records: Iterable[dict[str, Any]], path: Path) -> int:
    """Write ``records`` as one CSV at ``path`` once all of them are in; returns how many.

    The CSV's text is gathered in memory (a line per image, small beside the images themselves)
    and written atomically: an interrupted run leaves the previous file or none, never half a one.
    """
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["path", "label", "prob", "top_k", "ood_score", "in_distribution"])
    count = 0
    for record in records:
        top = ";".join(f"{label}:{prob}" for label, prob in record["top_k"])
        flag = {True: "true", False: "false", None: ""}[record["in_distribution"]]  # empty: uncalibrated
        writer.writerow([record["path"], record["label"], record["prob"], top, record["ood_score"], flag])
        count += 1
    write_atomically(path, text.getvalue().encode())
    return count

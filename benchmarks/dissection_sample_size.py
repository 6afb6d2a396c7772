"""How many images the dissection needs: detector shares per stage and seconds, by sample size.

    python benchmarks/dissection_sample_size.py outputs/DATE/TIME/checkpoints/best.ckpt

Dissects a trained shapes checkpoint (as ``insight.dissection`` does: top 2 % of each unit's
activations, IoU 0.04) on the first N held-out shapes images for each N of ``--sizes``, and
prints the mean share of edge, part and object detectors over each stage's layers and the
seconds each dissection took (the median of ``--repeats``), so that the view's default sample
can be chosen by how much the shares move against how long it takes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from layerscope.data.shapes import concepts, render_images_with_maps
from layerscope.inference.loading import load_classifier
from layerscope.insight.dissection import DETECTOR_TYPES, detector_shares, dissect
from layerscope.training.hardware import machine_line


def stage_of(name: str) -> str:
    return "stage 1" if name == "stem" else name.split(".")[0].replace("stage", "stage ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint trained on shapes (32 px)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 300, 500, 1000])
    parser.add_argument("--repeats", type=int, default=3, help="timed dissections per size")
    parser.add_argument("--quantile", type=float, default=0.02)
    parser.add_argument("--iou", type=float, default=0.04)
    args = parser.parse_args()
    classifier = load_classifier(args.checkpoint)
    model = classifier.model
    rows = torch.arange(max(args.sizes))
    images, labels, maps = render_images_with_maps(rows, classifier.image_size, 0, "test")
    masks = concepts(maps, labels)
    print(f"{machine_line()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; {args.checkpoint}")
    stages = ("stage 1", "stage 2", "stage 3")
    print("| images | seconds | " + " | ".join(f"{s}: edge / part / object" for s in stages) + " |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for size in args.sizes:
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            layers = dissect(model, lambda batch: model(classifier.to_batch(batch)), images[:size],
                             masks.masks[:size], args.quantile, args.iou)
            seconds.append(time.perf_counter() - started)
        by_stage: dict[str, list[dict[str, float]]] = {}
        for layer in layers:
            by_stage.setdefault(stage_of(layer.name), []).append(detector_shares(layer.labels, masks.kinds))
        cells = [" / ".join(f"{100 * statistics.mean(s[k] for s in shares):.0f} %" for k in DETECTOR_TYPES)
                 for shares in by_stage.values()]
        print(f"| {size} | {statistics.median(seconds):.2f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

"""How many images the dissection needs: detector shares per stage and seconds, by sample size.

    python benchmarks/dissection_sample_size.py outputs/DATE/TIME/checkpoints/best.ckpt
    python benchmarks/dissection_sample_size.py CHECKPOINT --sizes 150 300 --draws 4

Dissects a trained shapes checkpoint (as ``insight.dissection`` does: top 2 % of each unit's
activations, IoU 0.04) on ``--draws`` disjoint sets of N held-out shapes images for each N of
``--sizes`` (the first N images, the next N, ...), and prints, per stage, the mean share of edge,
part and object detectors over the stage's layers: the lowest and highest over the draws, so that
the spread between samples of the same size shows, and the median seconds a dissection took. The
view's default sample is chosen by how far the shares move between samples against the time.
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


def stage_means(layers: list, kinds: list[str]) -> dict[str, dict[str, float]]:
    """Per stage, the mean share of each detector type over the stage's layers."""
    by_stage: dict[str, list[dict[str, float]]] = {}
    for layer in layers:
        by_stage.setdefault(stage_of(layer.name), []).append(detector_shares(layer.labels, kinds))
    return {stage: {k: statistics.mean(s[k] for s in shares) for k in DETECTOR_TYPES}
            for stage, shares in by_stage.items()}


def spread(values: list[float]) -> str:
    """``low-high %`` over the draws (one value where they agree to the point)."""
    low, high = min(values), max(values)
    return f"{low:.0f} %" if round(low) == round(high) else f"{low:.0f}-{high:.0f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint trained on shapes (32 px)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[150, 300, 500, 1000])
    parser.add_argument("--draws", type=int, default=4, help="disjoint samples of each size")
    parser.add_argument("--quantile", type=float, default=0.02)
    parser.add_argument("--iou", type=float, default=0.04)
    args = parser.parse_args()
    classifier = load_classifier(args.checkpoint)
    model = classifier.model
    rows = torch.arange(max(args.sizes) * args.draws)
    images, labels, maps = render_images_with_maps(rows, classifier.image_size, 0, "test")
    masks = concepts(maps, labels)
    print(f"{machine_line()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; {args.checkpoint}; {args.draws} disjoint samples per size")
    stages = ("stage 1", "stage 2", "stage 3")
    print("| images | seconds | " + " | ".join(f"{s}: edge / part / object" for s in stages) + " |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for size in args.sizes:
        seconds, draws = [], []
        for draw in range(args.draws):
            span = slice(draw * size, (draw + 1) * size)
            started = time.perf_counter()
            layers = dissect(model, lambda batch: model(classifier.to_batch(batch)), images[span],
                             masks.masks[span], args.quantile, args.iou)
            seconds.append(time.perf_counter() - started)
            draws.append(stage_means(layers, masks.kinds))

        cells = [" / ".join(spread([100 * d[stage][k] for d in draws]) for k in DETECTOR_TYPES)
                 for stage in stages]
        print(f"| {size} | {statistics.median(seconds):.2f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

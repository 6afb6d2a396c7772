"""How well does each out-of-distribution score tell training-like images from others?

    python benchmarks/ood.py --shapes outputs/benchmarks/default_fp32/run-0/checkpoints/best.ckpt \
        --fashion outputs/benchmarks/fashion_deep_story/run-0/checkpoints/best.ckpt

Each checkpoint is copied to ``outputs/benchmarks/ood/<data>/checkpoints/best.ckpt``; a copy without a
calibration is calibrated there by ``eval.py calibrate=true`` (the run's validation images, as
training does). In-distribution images are the first ``--images`` of the checkpoint's own test
split; the others, brought to its input's channels and size (bilinear, antialiased):

- ``shapes`` checkpoint: Fashion-MNIST's test split, photos (random crops of scikit-image's
  sample photographs, at 32x32 like CIFAR-10), solid colours, uniform noise;
- ``fashion_mnist`` checkpoint: MNIST's test split where ``data/`` holds it (nothing is downloaded);
  otherwise scikit-learn's bundled handwritten digits (UCI optdigits, 8x8, upsampled into MNIST's
  20-pixel box), which the table then names; and shapes' test split.

For every score of ``layerscope.ood`` it prints AUROC (out-of-distribution images as positives) and
FPR95, the share of other images a threshold keeping 95 % of the test images lets through; and, for
the calibrated threshold the checkpoint stores, the share of test images it keeps and of each other
set it lets through. Last, the three inputs a new user tried first: a plain grey square, an RGBA
picture and a black 6000x6000 image, read from files as predict.py reads them.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score

from layerscope import ood
from layerscope.data.shapes import ShapesSource
from layerscope.data.torchvision_sets import IdxSource
from layerscope.errors import UserError
from layerscope.inference.loading import Classifier, load_classifier
from layerscope.training.hardware import machine_line

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "outputs" / "benchmarks" / "ood"
DATA = REPO / "data"
PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "rocket",
          "retina", "camera", "coins", "horse", "moon", "brick", "grass", "gravel", "clock")
SCORE_NAMES = (*ood.LOGIT_SCORES, ood.REACT)
PIL_GREY = torch.tensor([0.299, 0.587, 0.114])  # PIL's "L" weights: predict.py reads files through PIL


def as_input(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, channels, size, size)."""
    x = images.float()
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 3 and channels == 1:
        x = (x * PIL_GREY.view(1, 3, 1, 1)).sum(1, keepdim=True)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def photo_crops(n: int, seed: int) -> torch.Tensor:
    """``n`` square crops (a sixth to the whole of the shorter side) of scikit-image's sample photos."""
    import skimage.data

    rng = np.random.default_rng(seed)
    pictures = []
    for name in PHOTOS:
        picture = np.asarray(getattr(skimage.data, name)())
        pictures.append(np.repeat(picture[..., None], 3, 2) if picture.ndim == 2 else picture[..., :3])
    crops = []
    for _ in range(n):
        picture = pictures[rng.integers(len(pictures))]
        h, w = picture.shape[:2]
        side = int(rng.integers(min(h, w) // 6, min(h, w) + 1))
        top, left = rng.integers(h - side + 1), rng.integers(w - side + 1)
        crop = torch.from_numpy(np.ascontiguousarray(picture[top:top + side, left:left + side]))
        crops.append(as_input(crop.permute(2, 0, 1)[None], 3, 32)[0])
    return torch.stack(crops)


def solid_colours(n: int, seed: int) -> torch.Tensor:
    colours = torch.randint(0, 256, (n, 3, 1, 1), generator=torch.Generator().manual_seed(seed))
    return colours.expand(-1, -1, 32, 32).to(torch.uint8)


def noise(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=generator).to(torch.uint8)


def digits(n: int) -> tuple[str, torch.Tensor]:
    """MNIST's test images where data/ holds them, else scikit-learn's bundled digits in MNIST's layout."""
    try:
        return "MNIST", IdxSource(str(DATA), "mnist", download=False).load().test.images[:n]
    except UserError:
        from sklearn.datasets import load_digits

        small = torch.from_numpy(load_digits().images[:n]).float()[:, None] * (255 / 16)  # 0..16 -> 0..255
        box = F.interpolate(small, size=(20, 20), mode="bilinear", align_corners=False)
        framed = F.pad(box, (4, 4, 4, 4)).round().clamp(0, 255).to(torch.uint8)
        return "handwritten digits (scikit-learn)", framed


def scores(clf: Classifier, images: torch.Tensor) -> torch.Tensor:
    """(N, scores) every score of every image, in SCORE_NAMES' order, computed as predictions are."""
    table = clf.logits_and_scores(as_input(images, clf.in_channels, clf.image_size))[1]
    return torch.stack([table[name] for name in SCORE_NAMES], dim=1)


def calibrated_copy(ckpt: Path, data: str) -> Path:
    """The checkpoint copied under OUT/<data>, calibrated there by eval.py when it has no calibration."""
    copy = OUT / data / "checkpoints" / "best.ckpt"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt, copy)
    if torch.load(copy, weights_only=True).get(ood.CHECKPOINT_KEY) is None:
        subprocess.run([sys.executable, str(REPO / "eval.py"), f"ckpt_path={copy}", "calibrate=true",
                        f"data={data}", f"hydra.run.dir={OUT / data / 'eval'}"], check=True, cwd=REPO)
    return copy


def measure(clf: Classifier, inside: torch.Tensor, others: dict[str, torch.Tensor]) -> dict:
    """Per score and other set: AUROC and FPR95; for the stored threshold, what it keeps and lets through."""
    assert clf.calibration is not None
    known = scores(clf, inside)
    results: dict = {"test images": len(inside), "clip": clf.calibration.clip, "scores": {}, "calibrated": {}}
    other_scores = {name: scores(clf, images) for name, images in others.items()}
    for column, name in enumerate(SCORE_NAMES):
        at_95 = torch.quantile(known[:, column].double(), 0.95).item()
        results["scores"][name] = {
            other: {
                "images": len(values),
                "auroc": float(roc_auc_score(
                    np.r_[np.zeros(len(known)), np.ones(len(values))],
                    np.r_[known[:, column].numpy(), values[:, column].numpy()])),
                "fpr95": float((values[:, column] <= at_95).float().mean()),
            }
            for other, values in other_scores.items()
        }
        threshold = clf.calibration.thresholds[name]
        results["calibrated"][name] = {
            "threshold": threshold,
            "test kept": float((known[:, column] <= threshold).float().mean()),
            **{f"{other} let through": float((values[:, column] <= threshold).float().mean())
               for other, values in other_scores.items()},
        }
    return results


@torch.no_grad()
def head_inputs(clf: Classifier, images: torch.Tensor) -> dict[str, float]:
    """Means over ``images`` of the largest logit, and of the norm and largest value of the features
    entering the last layer: what ReAct's clip acts on."""
    head = ood.linear_head(clf.model)
    assert head is not None
    with ood.head_inputs(head) as features:
        logits = clf.model(clf.to_batch(as_input(images, clf.in_channels, clf.image_size)))
    kept = torch.cat(features)
    return {"largest logit": logits.amax(1).mean().item(), "feature norm": kept.norm(dim=1).mean().item(),
            "largest feature": kept.amax(1).mean().item()}


def first_tries(clf: Classifier) -> dict[str, dict]:
    """The inputs of a new user's first tries, as files read the way predict.py reads them."""
    with tempfile.TemporaryDirectory() as folder:
        files = {
            "plain grey square": Image.new("RGB", (32, 32), (128, 128, 128)),
            "RGBA picture": Image.new("RGBA", (64, 48), (200, 30, 30, 90)),
            "black 6000x6000": Image.new("RGB", (6000, 6000)),
        }
        results = {}
        for name, picture in files.items():
            path = Path(folder) / f"{name.replace(' ', '_')}.png"
            picture.save(path)
            predictions = clf.predict([path])
            assert predictions.in_distribution is not None
            results[name] = {"label": predictions.labels[0], "prob": round(float(predictions.probs.max()), 3),
                             "ood_score": round(float(predictions.ood_scores[0]), 3),
                             "in_distribution": bool(predictions.in_distribution[0])}
        return results


def print_tables(name: str, results: dict) -> None:
    others = list(results["scores"][SCORE_NAMES[0]])
    print(f"\n## {name} checkpoint, {results['test images']} test images\n")
    print("| score | " + " | ".join(f"{o} AUROC / FPR95" for o in others) + " |")
    print("| --- |" + " ---: |" * len(others))
    for score, per_set in results["scores"].items():
        cells = [f"{per_set[o]['auroc']:.3f} / {per_set[o]['fpr95']:.1%}" for o in others]
        print(f"| {score} | " + " | ".join(cells) + " |")
    print("\ncalibrated thresholds (stored in the checkpoint):")
    for score, row in results["calibrated"].items():
        print(f"  {score:12s} " + ", ".join(f"{k} {v:.4g}" if k == "threshold" else f"{k} {v:.1%}"
                                           for k, v in row.items()))
    print(f"  clip level {results['clip']:.4g}")
    for name, row in results.get("head inputs", {}).items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()))
    for case, row in results.get("first tries", {}).items():
        print(f"  {case}: {row}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=Path, required=True, help="a checkpoint trained on shapes")
    parser.add_argument("--fashion", type=Path, required=True, help="a checkpoint trained on Fashion-MNIST")
    parser.add_argument("--images", type=int, default=2000, help="images per set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = args.images
    shapes_test = ShapesSource(str(DATA)).load().test.images[:n]
    fashion_test = IdxSource(str(DATA), "fashion_mnist", download=False).load().test.images[:n]
    digits_name, digit_images = digits(n)
    report = {"machine": machine_line(), "torch": torch.__version__, "python": platform.python_version(),
              "score reported": ood.SCORE, "kept": ood.KEPT, "checkpoints": {}}

    shapes = load_classifier(calibrated_copy(args.shapes, "shapes"))
    report["checkpoints"]["shapes"] = measure(shapes, shapes_test, {
        "Fashion-MNIST": fashion_test, "photos": photo_crops(n, args.seed),
        "solid colours": solid_colours(n, args.seed), "noise": noise(n, args.seed),
    })
    report["checkpoints"]["shapes"]["first tries"] = first_tries(shapes)
    report["checkpoints"]["shapes"]["head inputs"] = {
        "test images": head_inputs(shapes, shapes_test),
        "solid colours": head_inputs(shapes, solid_colours(n, args.seed)),
    }
    fashion = load_classifier(calibrated_copy(args.fashion, "fashion_mnist"))
    report["checkpoints"]["fashion_mnist"] = measure(fashion, fashion_test, {
        digits_name: digit_images, "shapes": shapes_test,
    })
    report["checkpoints"]["shapes"]["source"] = str(args.shapes)
    report["checkpoints"]["fashion_mnist"]["source"] = str(args.fashion)

    print(report["machine"], f"torch {report['torch']}")
    for name, results in report["checkpoints"].items():
        print_tables(name, results)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {OUT / 'results.json'}")


if __name__ == "__main__":
    main()

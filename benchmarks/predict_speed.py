"""Inference speed: eager PyTorch vs TorchScript vs ONNX Runtime, and one predict.py call.

    python benchmarks/predict_speed.py outputs/DATE/TIME/checkpoints/best.ckpt

Exports the checkpoint to both formats (into a temporary folder), then times batch prediction
of the same random normalised batch in each runtime (median of repeats, after a warm-up), and
the wall time of ``python predict.py`` on one image from process start to answer.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime
import torch
from PIL import Image

from layerscope.inference import load_classifier
from layerscope.inference.export import export_onnx, export_torchscript
from layerscope.training.hardware import machine_line

REPO = Path(__file__).resolve().parents[1]


def images_per_second(
    run: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, repeats: int
) -> float:
    run(batch)  # warm-up: allocation, first-call compilation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - started)
    return len(batch) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a layerscope checkpoint")
    parser.add_argument("--batch", type=int, default=256, help="images per batch")
    parser.add_argument("--repeats", type=int, default=10, help="timed batches per runtime")
    parser.add_argument("--latency-repeats", type=int, default=5, help="predict.py calls")
    args = parser.parse_args()
    clf = load_classifier(args.checkpoint)
    shape = (clf.in_channels, clf.image_size, clf.image_size)
    batch = torch.randn(args.batch, *shape, generator=torch.Generator().manual_seed(0))
    rows = {}
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():
        rows["eager PyTorch"] = images_per_second(clf.model, batch, args.repeats)
        channels_last = clf.model.to(memory_format=torch.channels_last)
        rows["eager, channels_last"] = images_per_second(
            lambda x: channels_last(x.contiguous(memory_format=torch.channels_last)), batch, args.repeats)
        clf.model.to(memory_format=torch.contiguous_format)
        scripted = export_torchscript(clf, Path(folder) / "model.pt", batch[:2])
        rows["TorchScript"] = images_per_second(scripted, batch, args.repeats)
        rows["ONNX Runtime"] = images_per_second(
            export_onnx(clf, Path(folder) / "model.onnx", batch[:2]), batch, args.repeats)
        image = Path(folder) / "one.png"
        pixels = torch.randint(0, 256, (*shape[1:], shape[0]), dtype=torch.uint8).squeeze(-1)
        Image.fromarray(pixels.numpy()).save(image)
        latencies = []
        for _ in range(args.latency_repeats):
            started = time.perf_counter()
            subprocess.run([sys.executable, str(REPO / "predict.py"), f"ckpt_path={args.checkpoint}",
                            f"input={image}"], check=True, capture_output=True)
            latencies.append(time.perf_counter() - started)
    print(f"{machine_line()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
          f"model {type(clf.model).__name__} ({sum(p.numel() for p in clf.model.parameters()):,} params), "
          f"batch {args.batch}")
    base = rows["eager PyTorch"]
    for name, value in rows.items():
        print(f"{name:22s}{value:10.0f} images/s  {value / base:5.2f}x")
    print(f"predict.py on one image, process start to answer: median {statistics.median(latencies):.2f} s "
          f"over {len(latencies)} calls")


if __name__ == "__main__":
    main()

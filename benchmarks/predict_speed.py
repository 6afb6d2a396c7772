"""Inference speed: eager PyTorch vs TorchScript vs ONNX Runtime, and one predict.py call.

    python benchmarks/predict_speed.py outputs/DATE/TIME/checkpoints/best.ckpt

Exports the checkpoint to both formats (into a temporary folder), then times batch prediction
of the same random normalised batch in each runtime (median of repeats, after a warm-up), and
the wall time of ``python predict.py`` on one image from process start to answer. Where PyTorch
sees a CUDA GPU it adds two rows there, timed with synchronisation (a GPU runs asynchronously):
the model in fp32, and as ``Classifier.predict`` runs it on a GPU (channels-last, under autocast).
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
from layerscope.training.gpu import synchronize
from layerscope.training.hardware import machine_line

REPO = Path(__file__).resolve().parents[1]


def images_per_second(
    run: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, repeats: int
) -> float:
    run(batch)  # warm-up: allocation, first-call compilation, cuDNN's choice of algorithms
    times = []
    for _ in range(repeats):
        synchronize(batch.device)
        started = time.perf_counter()
        run(batch)
        synchronize(batch.device)
        times.append(time.perf_counter() - started)
    return len(batch) / statistics.median(times)


def gpu_rows(checkpoint: Path, batch: torch.Tensor, repeats: int) -> dict[str, float]:
    """The model on the GPU in fp32, and as ``Classifier.predict`` runs it there."""
    clf = load_classifier(checkpoint, device="cuda")
    on_gpu = batch.to(clf.device).contiguous(memory_format=torch.channels_last)
    name = torch.cuda.get_device_name(clf.device)
    half = str(clf.autocast).removeprefix("torch.")

    def predicting(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=clf.autocast):
            return clf.model(x)

    return {f"GPU fp32 ({name})": images_per_second(clf.model, on_gpu, repeats),
            f"GPU, autocast {half}": images_per_second(predicting, on_gpu, repeats)}


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
        if torch.cuda.is_available():
            rows.update(gpu_rows(args.checkpoint, batch, args.repeats))
    print(f"{machine_line()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
          f"model {type(clf.model).__name__} ({sum(p.numel() for p in clf.model.parameters()):,} params), "
          f"batch {args.batch}")
    base = rows["eager PyTorch"]
    for name, value in rows.items():
        print(f"{name:32s}{value:10.0f} images/s  {value / base:5.2f}x")
    print(f"predict.py on one image, process start to answer: median {statistics.median(latencies):.2f} s "
          f"over {len(latencies)} calls")


if __name__ == "__main__":
    main()

"""Evaluation speed against batch size: why validation and test batches are 128 or 256 images.

    python benchmarks/eval_batch_size.py --repeats 3

Times forward passes in eval mode (no gradients, channels_last, as validation and test run) over
the same random images, for each network and image shape below and each batch size, the batch
sizes alternating within each repeat; prints the median images per second.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Any

import torch
from omegaconf import OmegaConf

from layerscope.apps.cli import default_config_dir
from layerscope.models import build_model

# (conf/model option, channels, image size): the networks and images the defaults were chosen for.
CASES = [("fast", 1, 28), ("deep", 1, 28), ("deep", 3, 32)]


def model_config(name: str, channels: int, size: int) -> dict[str, Any]:
    """conf/model/NAME.yaml for ``channels`` x ``size`` x ``size`` images of 10 classes."""
    config = OmegaConf.load(default_config_dir() / "model" / f"{name}.yaml")
    config.merge_with({"in_channels": channels, "num_classes": 10, "image_size": size})
    return OmegaConf.to_container(config, resolve=True)


@torch.inference_mode()
def images_per_second(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        model(images[start : start + batch_size].contiguous(memory_format=torch.channels_last))
    return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="images per timed pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per batch size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 500, 1000])
    args = parser.parse_args()
    print(f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{args.images} random images per pass, median of {args.repeats}")
    header = " | ".join(f"{b:>6}" for b in args.batch_sizes)
    print(f"| network, image         | {header} |")
    generator = torch.Generator().manual_seed(0)
    for name, channels, size in CASES:
        model = build_model(model_config(name, channels, size)).eval().to(memory_format=torch.channels_last)
        images = torch.randn(args.images, channels, size, size, generator=generator)
        images_per_second(model, images[:256], 256)  # warm-up: allocation, first-call dispatch
        speeds: dict[int, list[float]] = {b: [] for b in args.batch_sizes}
        for _ in range(args.repeats):
            for batch_size in args.batch_sizes:
                speeds[batch_size].append(images_per_second(model, images, batch_size))
        cells = " | ".join(f"{statistics.median(speeds[b]):6.0f}" for b in args.batch_sizes)
        print(f"| {name}, {channels} x {size} x {size}".ljust(25) + f"| {cells} |", flush=True)


if __name__ == "__main__":
    main()

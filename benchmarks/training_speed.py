"""Training speed side by side: a raw PyTorch loop, the usual torchvision recipe, and layerscope.

    python benchmarks/training_speed.py                     # ResNet-20 on Fashion-MNIST, 3 repeats
    python benchmarks/training_speed.py --model fast        # the same for conf/model/fast.yaml
    python benchmarks/training_speed.py --steps 60 --repeats 1
    python benchmarks/training_speed.py --ablations         # + rows that undo one default each
    python benchmarks/training_speed.py --device cuda       # every row and the peak on the GPU

Every row trains the same network (conf/model/deep.yaml, ResNet-20, unless --model names another
file of conf/model/) on Fashion-MNIST with the
same batch size, optimizer (SGD, Nesterov momentum, weight decay), one-cycle schedule and thread
count, for the same number of steps:

- raw loop:     plain PyTorch over uint8 batches in memory, batched crop+flip, channels_last;
                no framework at all, the limit for this model on this machine.
- usual recipe: torchvision's FashionMNIST with per-image transforms (RandomCrop, RandomHorizontalFlip,
                ToTensor, Normalize) and a DataLoader with 2 workers, default memory format: what
                tutorials and the Lightning+Hydra template do.
- layerscope:   ``python train.py data=fashion_mnist`` as users run it, with insight=off and
                insight=default (its train/img_per_s from metrics.json).

Each row is timed from its first training step to its last, so start-up, data loading and
validation are left out (each layerscope run's whole wall time is printed as well). The rows
alternate within each repeat, so that noise from other work on the machine hits all alike; the
table holds medians. The same run measures the machine's fp32 matmul peak and counts the FLOPs
of one training step (forward and backward) with ``torch.utils.flop_counter``, so that each row's
achieved FLOP/s can be read as a share of that peak.

Every row, and the peak, run on one device: ``--device`` (default ``auto``: the GPU where there
is one, else the CPU). On a GPU the raw loop keeps the uint8 training set in GPU memory, the usual
recipe's loader pins its batches, layerscope runs with ``trainer.accelerator=gpu``, and every
timing waits for the GPU to finish (``torch.cuda.synchronize``). All rows compute in fp32 (on a
GPU with PyTorch's defaults: TF32 convolutions, full-fp32 matrix products), the bf16 row aside.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from layerscope.data.augment import channel_stats, normalise, random_crop_flip
from layerscope.data.torchvision_sets import DEBIAN_FASHION_MNIST, IdxSource
from layerscope.inference.loading import choose_device
from layerscope.models import build_model, training_flops_per_image
from layerscope.training.gpu import synchronize
from layerscope.training.hardware import machine_line
from layerscope.training.module import weight_decay_groups
from layerscope.training.schedules import one_cycle

REPO = Path(__file__).resolve().parents[1]
BATCH, LR, MOMENTUM, WEIGHT_DECAY, PADDING = 128, 0.2, 0.9, 5e-4, 2  # as conf/ sets them


def model_config(name: str) -> dict[str, Any]:
    """conf/model/NAME.yaml for Fashion-MNIST's 28x28 grey images and 10 classes."""
    config = OmegaConf.load(REPO / "conf" / "model" / f"{name}.yaml")
    config.merge_with({"in_channels": 1, "num_classes": 10, "image_size": 28})
    return OmegaConf.to_container(config, resolve=True)


def optimizer_and_schedule(model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """The optimizer and schedule of conf/optimizer/sgd.yaml and conf/scheduler/onecycle.yaml."""
    optimizer = torch.optim.SGD(weight_decay_groups(model), lr=LR, momentum=MOMENTUM, nesterov=True,
                                weight_decay=WEIGHT_DECAY)
    return optimizer, one_cycle(optimizer, total_steps=steps)


def timed_steps(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], model: nn.Module, steps: int,
                channels_last: bool, device: torch.device, warmup: int = 0, bf16: bool = False) -> float:
    """Train ``warmup`` untimed steps, then ``steps`` timed ones on ``device``; returns the timed seconds."""
    model = model.to(device)
    if device.type == "cuda":  # the first steps on a GPU pay for kernel choice and memory pools
        warmup = max(warmup, 3)
    optimizer, schedule = optimizer_and_schedule(model, steps + warmup)
    model.train()
    started = None
    for images, labels in batches:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if started is None and warmup == 0:
            synchronize(device)
            started = time.perf_counter()
        warmup -= 1
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if started is not None:
            steps -= 1
            if steps == 0:
                break
    assert started is not None and steps == 0, "ran out of data"
    synchronize(device)
    return time.perf_counter() - started


def raw_loop(steps: int, data: dict[str, Any], model_config: dict[str, Any], device: torch.device,
             compile: bool = False, channels_last: bool = True, bf16: bool = False) -> float:
    # The whole uint8 training set on the device (47 MB for Fashion-MNIST): no copies per step.
    images, labels = data["images"].to(device), data["labels"].to(device)
    mean, std = data["mean"].to(device), data["std"].to(device)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0)).to(device)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(order) - BATCH + 1, BATCH):
            index = order[start : start + BATCH]
            yield normalise(random_crop_flip(images[index], PADDING, True), mean, std), labels[index]

    model = build_model(model_config)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if not compile:
        return steps * BATCH / timed_steps(batches(), model, steps, channels_last, device, bf16=bf16)
    started = time.perf_counter()
    seconds = timed_steps(batches(), torch.compile(model), steps, channels_last=True, device=device, warmup=3)
    print(f"  torch.compile + 3 warm-up steps took {time.perf_counter() - started - seconds:.1f} s",
          flush=True)
    return steps * BATCH / seconds


def usual_recipe(
    steps: int, data: dict[str, Any], model_config: dict[str, Any], root: Path, device: torch.device
) -> float:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.RandomCrop(28, padding=PADDING), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(data["mean"].tolist(), data["std"].tolist()),
    ])
    dataset = datasets.FashionMNIST(str(root), train=True, transform=transform, download=False)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True,
                        pin_memory=device.type == "cuda")
    return steps * BATCH / timed_steps(
        iter(loader), build_model(model_config), steps, channels_last=False, device=device
    )


def layerscope_run(
    steps: int, model: str, insight: str, folder: Path, device: torch.device, *extra: str
) -> tuple[float, float]:
    """(training images/s, whole wall time in s) of one ``python train.py`` run on ``device``."""
    shutil.rmtree(folder, ignore_errors=True)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    command = [
        sys.executable, str(REPO / "train.py"), "data=fashion_mnist", f"model={model}",
        f"trainer.accelerator={accelerator}", "trainer.precision=32-true",
        f"insight={insight}", f"data.train_size={steps * BATCH}", "data.val_size=1000",
        "trainer.max_epochs=1", "test=false", "trainer.enable_progress_bar=false",
        f"hydra.run.dir={folder}", *extra,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    return json.loads((folder / "metrics.json").read_text())["train/img_per_s"], wall


def matmul_peak(device: torch.device, repeats: int = 10) -> float:
    """fp32 FLOP/s of a large square matrix product on ``device``: what its BLAS reaches at best."""
    n = 8192 if device.type == "cuda" else 4096  # a GPU needs more work to be timed above its noise
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - started)
    return 2 * n**3 / statistics.median(times)


def benchmark_device(name: str) -> torch.device:
    """``--device``: ``auto`` as everywhere (``choose_device``); ``cuda`` without one ends the benchmark."""
    device = torch.device(choose_device(name))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here; use --device cpu")
    return device


def device_line(device: torch.device) -> str:
    """The machine, and the GPU the rows ran on where they did."""
    line = f"{machine_line()}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        line += f"; every row on {torch.cuda.get_device_name(device)}"
    return line


def load_fashion(work: Path) -> dict[str, Any]:
    """The training images in memory, and the raw files where torchvision's FashionMNIST looks."""
    splits = IdxSource(str(REPO / "data"), "fashion_mnist", download=False).load()
    raw = work / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for packed in DEBIAN_FASHION_MNIST.glob("*.gz"):  # torchvision reads the unpacked files
        target = raw / packed.stem
        if not target.exists():
            target.write_bytes(gzip.decompress(packed.read_bytes()))
    mean, std = channel_stats(splits.train.images)
    return {"images": splits.train.images, "labels": splits.train.labels,
            "mean": torch.tensor(mean), "std": torch.tensor(std)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deep", help="a file of conf/model/ (default: deep, ResNet-20)")
    parser.add_argument("--steps", type=int, default=100, help="training steps per row and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of all rows")
    parser.add_argument("--compile", action="store_true",
                        help="add a row: the raw loop with torch.compile (timed after 3 warm-up steps)")
    parser.add_argument("--ablations", action="store_true",
                        help="add rows that undo one default each: NCHW memory format, bf16 autocast, "
                             "2 loader workers")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where every row and the matmul peak run (auto: the GPU if there is one)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "training_speed")
    args = parser.parse_args()
    device = benchmark_device(args.device)
    model = model_config(args.model)
    torch.manual_seed(0)
    data = load_fashion(args.out / "torchvision")
    rows: dict[str, Callable[[], float]] = {
        "raw loop": lambda: raw_loop(args.steps, data, model, device),
        "usual recipe": lambda: usual_recipe(args.steps, data, model, args.out / "torchvision", device),
    }
    if args.compile:
        rows["raw loop, torch.compile"] = lambda: raw_loop(args.steps, data, model, device, compile=True)
    walls: dict[str, list[float]] = {"insight=off": [], "insight=default": []}
    for insight in ("off", "default"):
        def run(insight: str = insight) -> float:
            speed, wall = layerscope_run(
                args.steps, args.model, insight, args.out / f"layerscope-{insight}", device
            )
            walls[f"insight={insight}"].append(wall)
            return speed
        rows[f"layerscope, insight={insight}"] = run
    if args.ablations:  # each default undone on its own: what it is worth here
        rows["raw loop, NCHW"] = lambda: raw_loop(args.steps, data, model, device, channels_last=False)
        rows["raw loop, bf16 autocast"] = lambda: raw_loop(args.steps, data, model, device, bf16=True)
        rows["layerscope, 2 loader workers"] = lambda: layerscope_run(
            args.steps, args.model, "off", args.out / "layerscope-workers", device, "data.num_workers=2")[0]
    speeds: dict[str, list[float]] = {name: [] for name in rows}
    peaks = []
    for repeat in range(args.repeats):
        peaks.append(matmul_peak(device))
        for name, row in rows.items():
            speeds[name].append(row())
            print(f"  repeat {repeat + 1}: {name:28s} {speeds[name][-1]:8.1f} images/s", flush=True)
    flops = training_flops_per_image(build_model(model), (1, 28, 28))  # Fashion-MNIST's images
    report(args, model, {k: statistics.median(v) for k, v in speeds.items()}, statistics.median(peaks),
           flops, {k: statistics.median(v) for k, v in walls.items()}, speeds, device)


def report(args: argparse.Namespace, model: dict[str, Any], speed: dict[str, float], peak: float,
           flops: float, walls: dict[str, float], raw: dict[str, list[float]], device: torch.device) -> None:
    machine = device_line(device)
    print(f"\nmodel={args.model} ({model['_target_']}) on Fashion-MNIST, batch {BATCH}, "
          f"{args.steps} steps x {args.repeats} repeats; {machine}, torch {torch.__version__}")
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s; one training image: {flops / 1e6:.1f} MFLOP "
          "(forward + backward)")
    print(f"\n| {'row':28s} | images/s | vs raw loop | vs usual recipe | GFLOP/s | of peak |")
    print(f"| {'---':28s} | ---: | ---: | ---: | ---: | ---: |")
    for name, value in speed.items():
        achieved = value * flops
        print(f"| {name:28s} | {value:8.1f} | {value / speed['raw loop']:.2f}x | "
              f"{value / speed['usual recipe']:.2f}x | {achieved / 1e9:.1f} | {achieved / peak:.0%} |")
    for name, wall in walls.items():
        print(f"layerscope {name}: {wall:.1f} s per run from process start to finish (median)")
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-cuda" if device.type == "cuda" else ""  # GPU results beside the CPU ones
    (args.out / f"results-{args.model}{suffix}.json").write_text(json.dumps(
        {"images_per_s": raw, "matmul_peak_flops": peak, "training_flops_per_image": flops,
         "layerscope_wall_s": walls, "steps": args.steps, "machine": machine,
         "torch": torch.__version__, "model": model}, indent=2))


if __name__ == "__main__":
    main()

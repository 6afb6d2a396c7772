"""What a checkpoint save costs against the training it protects: why last.ckpt every 200 steps.

    python benchmarks/checkpoint_save.py --saves 15

Builds ResNet-20 (conf/model/deep.yaml) for Fashion-MNIST's 28 x 28 grey images, takes a few SGD
steps so the optimizer holds its momentum buffers, then writes a checkpoint of the weights and
optimizer state the way training does (``AtomicCheckpointIO``: serialise, temporary file, fsync,
rename, fsync the folder) ``--saves`` times into a temporary folder, and times 20 training steps of
batch 128 to put the save beside ``callbacks.last_checkpoint.every_n_train_steps`` steps of training.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from layerscope.apps.cli import default_config_dir
from layerscope.models import build_model
from layerscope.training.checkpointing import AtomicCheckpointIO

BATCH = 128


def model_config() -> dict[str, Any]:
    config = OmegaConf.load(default_config_dir() / "model" / "deep.yaml")
    config.merge_with({"in_channels": 1, "num_classes": 10, "image_size": 28})
    return OmegaConf.to_container(config, resolve=True)


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> float:
    """Seconds for ``steps`` SGD steps on random batches (channels_last, as training runs)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, 1, 28, 28, generator=generator).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (BATCH,), generator=generator)
    started = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=15, help="timed saves")
    parser.add_argument("--every", type=int, default=200, help="training steps between saves to compare with")
    args = parser.parse_args()
    model = build_model(model_config()).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    train_steps(model, optimizer, 3)  # warm-up, and momentum buffers to save
    step_seconds = train_steps(model, optimizer, 20) / 20
    checkpoint = {"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()]}
    io = AtomicCheckpointIO()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "last.ckpt"
        seconds = []
        for _ in range(args.saves):
            started = time.perf_counter()
            io.save_checkpoint(checkpoint, path)
            seconds.append(time.perf_counter() - started)
        size = path.stat().st_size
    save = statistics.median(seconds)
    between = step_seconds * args.every
    print(f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    low, high = min(seconds) * 1000, max(seconds) * 1000
    print(f"checkpoint of ResNet-20 + SGD state: {size / 1e6:.1f} MB; save (fsync included): median "
          f"{save * 1000:.1f} ms over {args.saves} (range {low:.1f}-{high:.1f} ms)")
    print(f"{args.every} training steps of batch {BATCH}: {between:.1f} s "
          f"({BATCH / step_seconds:.0f} images/s); one save costs {save / between:.3%} of them")


if __name__ == "__main__":
    main()

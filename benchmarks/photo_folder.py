"""Training on a folder of JPEG photos: speed, peak memory and time spent waiting for data.

    python benchmarks/photo_folder.py                  # 20,000 photos, 300-500 px (made once, ~3 min)
    python benchmarks/photo_folder.py --steps 20       # shorter

Generates photo folders under data/ (``layerscope.data.photo_folder``: five classes of shapes on
noisy backgrounds, saved as JPEG), then runs ``python train.py`` on them one setting after the
other, never two at once, each for ``--steps`` training steps without validation, test or views:

- ResNet-18 (``model=torchvision``) at 224 px, streamed from disk, on 20,000 and on 5,000 photos
  (whether memory grows with the folder);
- ResNet-20 (``model=deep``) at 64 px, streamed from disk, and decoded into memory.

For each it prints the training speed the run measured (``train/img_per_s``), the share of the
fit spent waiting for the next batch (the run's ``batches`` phase), the data set-up time, and the
peak memory of the training process and its loader workers together (their proportional set
sizes, sampled every second: memory the workers share with the trainer counts once).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from layerscope.data.photo_folder import CLASSES, write_photo_folder
from layerscope.training.hardware import machine_line

REPO = Path(__file__).resolve().parents[1]


def photo_folder(count: int) -> Path:
    """``count`` photos under data/, generated on first use."""
    root = REPO / "data" / f"photos-{count}"
    done = root / ".complete"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        write_photo_folder(root, count // len(CLASSES))
        done.touch()
        print(f"generated {count} photos in {root} in {time.perf_counter() - started:.0f} s", flush=True)
    return root


def tree_memory(process: psutil.Process) -> int:
    """Memory of a process and all its children (the loader workers), in bytes: their proportional
    set sizes, so that pages the forked workers share with the trainer count once, not once each."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # a worker that just exited
            total += member.memory_full_info().pss
    return total


def one_run(overrides: list[str], steps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, str(REPO / "train.py"), *overrides, "trainer.max_epochs=1",
                   f"+trainer.limit_train_batches={steps}", "+trainer.limit_val_batches=0",
                   "trainer.num_sanity_val_steps=0", "test=false", "insight=off",
                   "trainer.enable_progress_bar=false", f"hydra.run.dir={folder}"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        watched, peak = psutil.Process(process.pid), 0
        while process.poll() is None:
            try:
                peak = max(peak, tree_memory(watched))
            except psutil.NoSuchProcess:
                break
            time.sleep(1.0)  # reading proportional set sizes costs CPU: not too often
        errors = process.stderr.read() if process.stderr else ""
        if process.returncode != 0:
            raise SystemExit(f"train.py {' '.join(overrides)} failed:\n{errors[-3000:]}")
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
    phases = metrics["seconds_by_phase"]
    fit = phases.get("batches", 0) + phases.get("training steps", 0)
    return {
        "img_per_s": metrics["train/img_per_s"],
        "waiting": phases.get("batches", 0) / fit if fit else float("nan"),
        "setup_s": phases.get("data set-up", 0),
        "peak_gib": peak / 2**30,
        "precision": metrics["precision"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps per setting")
    parser.add_argument("--photos", type=int, default=20_000, help="photos in the large folder")
    parser.add_argument("--small", type=int, default=5_000, help="photos in the small folder")
    args = parser.parse_args()
    large, small = photo_folder(args.photos), photo_folder(args.small)
    resnet18 = ["model=torchvision", "model.arch=resnet18", "data.image_size=224", "data.batch_size=32"]
    deep = ["model=deep", "data.image_size=64", "data.batch_size=128"]
    settings = [
        (f"resnet18, 224 px, streamed, {args.photos} photos", resnet18, large, "disk"),
        (f"resnet18, 224 px, streamed, {args.small} photos", resnet18, small, "disk"),
        (f"deep, 64 px, streamed, {args.photos} photos", deep, large, "disk"),
        (f"deep, 64 px, in memory, {args.photos} photos", deep, large, "memory"),
    ]
    print(machine_line())
    print(f"{args.steps} training steps per setting, one setting at a time")
    print(f"{'setting':44} {'img/s':>7} {'waiting':>8} {'set-up s':>9} {'peak GiB':>9}  precision")
    for name, model, root, cache in settings:
        result = one_run([*model, "data=imagefolder", f"data.root={root}", f"data.source.cache={cache}"],
                         args.steps)
        print(f"{name:44} {result['img_per_s']:7.1f} {result['waiting']:8.1%} {result['setup_s']:9.1f} "
              f"{result['peak_gib']:9.2f}  {result['precision']}", flush=True)


if __name__ == "__main__":
    main()

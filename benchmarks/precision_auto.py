"""trainer.precision=auto against fp32: time, test accuracy and training loss of whole runs, seed by seed.

    python benchmarks/precision_auto.py                              # the default run, seeds 42, 1, 2
    python benchmarks/precision_auto.py experiment=fashion_fast --seeds 1 2 3
    python benchmarks/precision_auto.py model=deep model.depth=56 data=fashion_mnist \
        data.train_size=20000 trainer.max_epochs=6 trainer.log_every_n_steps=5 --seeds 42
                                                     # why_deep's 56-layer residual run (notebook 03)

For each seed, runs ``python train.py OVERRIDES seed=S`` with ``trainer.precision=32-true`` and
then with ``trainer.precision=auto`` (one after the other, never at once), times each from launch
to exit, and prints a row per run (what ``auto`` chose, test accuracy, the last epoch's mean
training loss, the highest logged training loss after the first epoch, which shows a loss that
jumped back up, wall time, training images/s) and the medians of each precision with the
seed-to-seed spread of their accuracy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from layerscope.training.hardware import machine_line
from layerscope.training.logged import logged_scalars

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("32-true", "auto")


def one_run(overrides: list[str], folder: Path) -> dict[str, Any]:
    """train.py once into ``folder``: its metrics.json plus the wall time seen from outside."""
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, str(REPO / "train.py"), *overrides, "trainer.enable_progress_bar=false",
               f"hydra.run.dir={folder}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["wall_seconds"] = time.perf_counter() - started
    metrics["final_loss"], metrics["highest_later_loss"] = training_loss(folder)
    return metrics


def training_loss(folder: Path) -> tuple[float, float]:
    """The last epoch's mean training loss, and the highest step loss logged after the first epoch."""
    logged = logged_scalars(folder, "train/loss_(epoch|step)")
    epochs = logged["train/loss_epoch"]
    later = [value for step, value in logged["train/loss_step"] if step > epochs[0][0]]
    return epochs[-1][1], max(later, default=float("nan"))


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", default=["model=deep"],
                        help="train.py overrides (default: model=deep, the README's first run)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "precision_auto")
    args = parser.parse_args()
    print(f"python train.py {' '.join(args.overrides)} on {machine_line()}", flush=True)
    print("| seed | trainer.precision | chosen | test accuracy | training loss, last epoch "
          "| highest training loss after epoch 1 | wall time | training images/s |")
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in PRECISIONS}
    for seed in args.seeds:
        for precision in PRECISIONS:
            overrides = [*args.overrides, f"seed={seed}", f"trainer.precision={precision}"]
            run = one_run(overrides, args.out / f"{precision}-seed{seed}")
            runs[precision].append(run)
            print(f"| {seed} | {precision} | {run['precision']} | {run['test/acc']:.2%} | "
                  f"{run['final_loss']:.3f} | {run['highest_later_loss']:.2f} | "
                  f"{minutes(run['wall_seconds'])} | {run['train/img_per_s']:,.1f} |", flush=True)
    print()
    median = {p: statistics.median(r["wall_seconds"] for r in rs) for p, rs in runs.items()}
    for precision, results in runs.items():
        accuracy = [r["test/acc"] for r in results]
        print(f"{precision:8s} ({results[0]['precision']}): median {statistics.median(accuracy):.2%} test "
              f"(seeds {min(accuracy):.2%} to {max(accuracy):.2%}) in {minutes(median[precision])}")
    print(f"auto against 32-true: {median['32-true'] / median['auto']:.2f}x faster (median wall times)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"overrides": args.overrides, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()

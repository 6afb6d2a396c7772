"""What insight costs: training with insight=off and insight=default side by side.

    python benchmarks/insight_overhead.py --data fashion_mnist --epochs 2 --repeats 2
    python benchmarks/insight_overhead.py --data fashion_mnist --epochs 7 --settings default

Runs ``train.py`` (one process per run, alternating off/default so that machine noise hits both
alike), reads each run's metrics.json, and prints the median fit time per epoch (training,
validation and every insight view, including the drawing before training), the ratio, and the
size of the TensorBoard event files. For the default runs it also prints the views' own time
(``insight`` in the run's ``seconds_by_phase``) against the rest of the fit: the same question
without the run-to-run noise of two separate runs, which on this shared machine can exceed the
views' whole cost; it leaves out only the layer summaries recorded during validation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from layerscope.training.hardware import machine_line
from layerscope.training.timing import insight_cost

REPO = Path(__file__).resolve().parents[1]


def run(choice: str, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    shutil.rmtree(folder, ignore_errors=True)  # a fresh folder: event files of earlier runs would add up
    command = [
        sys.executable, str(REPO / "train.py"), f"data={args.data}", f"model={args.model}",
        f"trainer.max_epochs={args.epochs}", f"insight={choice}", "test=false",
        f"hydra.run.dir={folder}", *args.overrides,
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = json.loads((folder / "metrics.json").read_text())
    events = sum(f.stat().st_size for f in (folder / "tensorboard").glob("events.out.tfevents.*"))
    cost = insight_cost(metrics)
    return {"epoch_s": metrics["fit_seconds"] / args.epochs, "events_mb": events / 1e6,
            "img_per_s": metrics["train/img_per_s"], "views_s": cost["views_s"], "once_s": cost["once_s"],
            "views_share": cost["run_share"], "epoch_share": cost["epoch_share"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion_mnist", help="data config")
    parser.add_argument("--model", default="deep", help="model config")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting")
    parser.add_argument("--settings", nargs="+", choices=["off", "default"], default=["off", "default"],
                        help="insight settings run, in this order within each repeat")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "insight")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {choice: [] for choice in args.settings}
    for repeat in range(args.repeats):
        for choice in results:
            results[choice].append(run(choice, args, args.out / f"{choice}-{repeat}"))
            print(f"  {choice:8s} run {repeat + 1}: {results[choice][-1]}", flush=True)
    median = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in results.items()}
    machine = f"{machine_line()}, {torch.get_num_threads()} threads"
    print(f"\n{args.model} on {args.data}, {args.epochs} epochs x {args.repeats} runs each; "
          f"{machine}, torch {torch.__version__}")
    print(f"{'insight':10s}{'s/epoch':>10s}{'img/s':>10s}{'events MB':>12s}")
    for choice, m in median.items():
        print(f"{choice:10s}{m['epoch_s']:10.1f}{m['img_per_s']:10.1f}{m['events_mb']:12.2f}")
    if "off" in median and "default" in median:
        ratio = median["default"]["epoch_s"] / median["off"]["epoch_s"]
        print(f"epoch time default / off: {ratio:.3f} ({(ratio - 1) * 100:+.1f}%)")
    if "default" in median:
        views = median["default"]
        print(f"the views' own time in the default runs: {views['views_s']:.1f} s, "
              f"{views['views_share']:.1%} of the rest of the fit; per epoch "
              f"{views['epoch_share']:.1%} (without the {views['once_s']:.1f} s spent once per run, "
              "before the first step and after the last)")


if __name__ == "__main__":
    main()

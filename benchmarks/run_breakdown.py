"""Where the wall time of a whole ``python train.py`` run goes, phase by phase.

    python benchmarks/run_breakdown.py                        # the default run: model=deep
    python benchmarks/run_breakdown.py experiment=fashion_fast
    python benchmarks/run_breakdown.py --repeats 3 debug=fast
    python benchmarks/run_breakdown.py --seeds 1 2 3 experiment=fashion_fast

Runs ``python train.py OVERRIDES`` as a user would (a new process each time), times it from
launch to exit, and prints the phases that the run itself recorded in metrics.json
(``seconds_by_phase``: start-up, data set-up, building, batches, training steps, validation,
insight, checkpoints, progress bar, test, other) with their shares of the wall time, plus the
time between the run's last line and the process's exit, then what each insight view took
(``insight_seconds_by_view``) against the time outside the views. With ``--repeats`` above 1 or
several ``--seeds``, each figure is the median over the runs.
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

import torch

from layerscope.training.hardware import machine_line
from layerscope.training.timing import PHASES, insight_cost

REPO = Path(__file__).resolve().parents[1]


def one_run(overrides: list[str], folder: Path) -> dict[str, Any]:
    """Run train.py once into ``folder``; its metrics.json, plus the wall time seen from outside."""
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, str(REPO / "train.py"), *overrides, "trainer.enable_progress_bar=false",
               f"hydra.run.dir={folder}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["wall_seconds"] = wall
    return metrics


def table(runs: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """(phase, median seconds) rows in the run's order, then the exit, then the wall time."""
    rows = [(phase, statistics.median(r["seconds_by_phase"][phase] for r in runs)) for phase in PHASES]
    rows.append(("exit (after the summary)",
                 statistics.median(max(0.0, r["wall_seconds"] - r["total_seconds"]) for r in runs)))
    rows.append(("wall time, launch to exit", statistics.median(r["wall_seconds"] for r in runs)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", default=["model=deep"],
                        help="train.py overrides (default: model=deep, the README's first run)")
    parser.add_argument("--repeats", type=int, default=1, help="runs; figures are medians over them")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="one run per seed (seed=S added to the overrides) instead of --repeats "
                             "runs of the same seed")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "run_breakdown")
    args = parser.parse_args()
    runs = []
    per_run = [[f"seed={seed}"] for seed in args.seeds] if args.seeds else [[]] * args.repeats
    for repeat, extra in enumerate(per_run):
        runs.append(one_run([*args.overrides, *extra], args.out / f"run-{repeat}"))
        print(f"  run {repeat + 1}: {runs[-1]['wall_seconds']:.1f} s, test/acc {runs[-1].get('test/acc')}",
              flush=True)
    rows = table(runs)
    wall = rows[-1][1]
    median = statistics.median
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    seeds = f" (seeds {' '.join(map(str, args.seeds))})" if args.seeds else ""
    print(f"\npython train.py {' '.join(args.overrides)}: {len(runs)} run(s){seeds} on "
          f"{machine_line()}{gpu}, {runs[0]['epochs']} epochs, "
          f"{median(r['train/img_per_s'] for r in runs):.1f} training images/s, "
          f"test/acc {median(r.get('test/acc') or 0.0 for r in runs):.4f}\n")
    print(f"| {'phase':28s} | seconds | share of wall time |")
    print(f"| {'---':28s} | ---: | ---: |")
    for phase, seconds in rows:
        print(f"| {phase:28s} | {seconds:7.1f} | {seconds / wall:5.1%} |")
    cost = {key: median(insight_cost(r)[key] for r in runs) for key in insight_cost(runs[0])}
    outside = cost["outside_s"]
    print(f"\nThe insight views: {cost['views_s']:.1f} s, {cost['run_share']:.1%} of the {outside:.1f} s "
          f"of the fit outside them; per epoch {cost['epoch_share']:.1%} (the {cost['once_s']:.1f} s spent "
          "once per run left out; the views' budget: 5 % of the epoch time)\n")
    moments = runs[0].get("insight_seconds_by_moment", {})
    print(" | ".join(f"{moment}: {median(r['insight_seconds_by_moment'][moment] for r in runs):.1f} s"
                     for moment in moments) + "\n")
    print(f"| {'view':28s} | seconds | share of the fit outside the views |")
    print(f"| {'---':28s} | ---: | ---: |")
    for view in runs[0].get("insight_seconds_by_view", {}):
        seconds = median(r["insight_seconds_by_view"].get(view, 0.0) for r in runs)
        print(f"| {view:28s} | {seconds:7.1f} | {seconds / outside:5.1%} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"overrides": args.overrides, "runs": runs, "median_seconds": dict(rows)}, indent=2))


if __name__ == "__main__":
    main()

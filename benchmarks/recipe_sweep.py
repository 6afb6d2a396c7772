"""Recipes side by side: test accuracy and wall time of whole ``python train.py`` runs, over seeds.

    python benchmarks/recipe_sweep.py --seeds 1 2 3 \\
        --recipe "today: model=deep" \\
        --recipe "20k x 3: model=deep data.train_size=20000 trainer.max_epochs=3"

Each ``--recipe`` is ``NAME: OVERRIDES`` (train.py overrides, space-separated); ``--common``
overrides go to every run (e.g. ``insight=off trainer.precision=32-true``). The runs go one after
the other, never two at once (two trainings on two cores fight over them), and alternate between
the recipes within each seed, so that the machine's drift hits every recipe alike. Each run is a
new process, timed from launch to exit as a user would see it. The table gives, per recipe, the
median and range over the seeds of test accuracy and wall time, the images passed through the
network (training images x epochs) and the precision the run used, with the processor named.
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

REPO = Path(__file__).resolve().parents[1]


def parse_recipe(text: str) -> tuple[str, list[str]]:
    """``"NAME: a=1 b=2"`` -> ``("NAME", ["a=1", "b=2"])``."""
    name, sep, overrides = text.partition(":")
    if not sep or not name.strip():
        raise SystemExit(f"--recipe {text!r}: write it as 'NAME: OVERRIDES'")
    return name.strip(), overrides.split()


def one_run(overrides: list[str], folder: Path) -> dict[str, Any]:
    """train.py once into ``folder``: its metrics.json plus the wall time from launch to exit."""
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, str(REPO / "train.py"), *overrides, "trainer.enable_progress_bar=false",
               "trainer.enable_model_summary=false", f"hydra.run.dir={folder}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["wall_seconds"] = time.perf_counter() - started
    return metrics


def spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """``median (min-max)`` of ``values`` times ``scale``."""
    v = [x * scale for x in values]
    return f"{statistics.median(v):.{digits}f} ({min(v):.{digits}f}-{max(v):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", required=True, help="'NAME: OVERRIDES'")
    parser.add_argument("--common", default="", help="overrides added to every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "recipe_sweep")
    args = parser.parse_args()
    recipes = [parse_recipe(text) for text in args.recipe]
    common = args.common.split()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in recipes}
    print(f"recipe sweep on {machine_line()}, seeds {' '.join(map(str, args.seeds))}, "
          f"common overrides: {' '.join(common) or 'none'}", flush=True)
    for seed in args.seeds:
        for index, (name, overrides) in enumerate(recipes):
            folder = args.out / f"{index}-seed{seed}"
            metrics = one_run([*overrides, *common, f"seed={seed}"], folder)
            runs[name].append(metrics)
            print(f"  {name}, seed {seed}: test/acc {metrics['test/acc']:.4f}, "
                  f"{metrics['wall_seconds']:.1f} s, {metrics['train/img_per_s']:.0f} images/s, "
                  f"{metrics['precision']}", flush=True)
    print("\n| recipe | test accuracy, % (median, range) | wall time, s (median, range) "
          "| images seen | training images/s | precision |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, _ in recipes:
        done = runs[name]
        seen = done[0].get("train/images")
        print(f"| {name} | {spread([r['test/acc'] for r in done], 100, 2)} "
              f"| {spread([r['wall_seconds'] for r in done])} | {seen} "
              f"| {statistics.median(r['train/img_per_s'] for r in done):.0f} | {done[0]['precision']} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"machine": machine_line(), "common": common, "seeds": args.seeds,
         "recipes": {name: {"overrides": o, "runs": runs[name]} for name, o in recipes}}, indent=2))


if __name__ == "__main__":
    main()

"""The detector shares a run's dissection view measured, by layer and by stage, first and last step.

    python benchmarks/dissection_shares.py outputs/DATE/TIME

Reads the scalars ``dissection/<edge|part|object>/NN_layer`` from the run's TensorBoard event
files and prints, for step 0 (the untrained network) and the last logged step, the share of each
layer's units labelled edge, part and object detectors, then the mean share over the layers of
each stage (ResNet layer names: ``stem`` counts with stage 1, ``fc`` has no units to dissect).
With ``--charts DIR`` it also saves the run's ``dissection/detectors_by_depth`` chart of those two
steps as ``DIR/dissection_step_<N>.png``.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TYPES = ("edge", "part", "object")
TAG = re.compile(r"^dissection/(edge|part|object)/(\d+)_(.+)$")


def read_shares(run_dir: Path) -> dict[int, dict[str, dict[str, float]]]:
    """step -> layer tag -> type -> share, from every event file under ``run_dir``."""
    shares: dict[int, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            match = TAG.match(tag)
            if match:
                kind, number, name = match.groups()
                for event in accumulator.Scalars(tag):
                    shares[event.step][f"{number}_{name}"][kind] = event.value
    if not shares:
        raise SystemExit(f"no dissection scalars under {run_dir}: was it trained on shapes with insight on?")
    return shares


def save_charts(run_dir: Path, steps: list[int], folder: Path) -> None:
    """The ``dissection/detectors_by_depth`` images of ``steps``, as the run logged them (PNG bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
        accumulator.Reload()
        if "dissection/detectors_by_depth" in accumulator.Tags()["images"]:
            for image in accumulator.Images("dissection/detectors_by_depth"):
                if image.step in steps:
                    (folder / f"dissection_step_{image.step}.png").write_bytes(image.encoded_image_string)


def stage(layer: str) -> str:
    found = re.search(r"stage(\d+)", layer)
    return f"stage {found.group(1)}" if found else ("stage 1" if "stem" in layer else layer)


def print_step(step: int, layers: dict[str, dict[str, float]]) -> None:
    print(f"\nstep {step}: share of units labelled edge / part / object detectors")
    print("| layer | edge | part | object |\n| --- | ---: | ---: | ---: |")
    by_stage: dict[str, list[dict[str, float]]] = defaultdict(list)
    for layer in sorted(layers):
        share = layers[layer]
        by_stage[stage(layer)].append(share)
        print(f"| `{layer}` | " + " | ".join(f"{share.get(t, 0.0):.0%}" for t in TYPES) + " |")
    print("\n| stage | layers | edge (mean, range) | part (mean, range) | object (mean, range) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, members in by_stage.items():
        cells = []
        for kind in TYPES:
            values = [m.get(kind, 0.0) for m in members]
            cells.append(f"{sum(values) / len(values):.0%} ({min(values):.0%}-{max(values):.0%})")
        print(f"| {name} | {len(members)} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (or its tensorboard/ folder)")
    parser.add_argument("--charts", type=Path, help="save the first and last step's chart here")
    args = parser.parse_args()
    shares = read_shares(args.run_dir)
    steps = sorted(shares)
    for step in dict.fromkeys([steps[0], steps[-1]]):
        print_step(step, shares[step])
    if args.charts:
        save_charts(args.run_dir, [steps[0], steps[-1]], args.charts)


if __name__ == "__main__":
    main()

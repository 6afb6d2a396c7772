"""What a run measured of the layer story: detector shares and probe accuracies, first and last step.

    python benchmarks/layer_story_numbers.py outputs/DATE/TIME [--charts docs]

Reads the scalars ``dissection/<edge|part|object|colour>/NN_layer`` from the run's TensorBoard event
files and prints, for step 0 (the untrained network) and the last logged step, the share of each
layer's units labelled detectors of each kind the run had concepts of (``shapes``: edge, part,
object and colour; Fashion-MNIST: edge and object silhouettes), then the mean share over the layers of
each stage (ResNet layer names: ``stem`` counts with stage 1, ``fc`` has no units to dissect).
Then, from ``probe/class/NN_layer``, ``probe/parts/NN_layer`` and ``receptive_field/NN_layer``,
each layer's probe accuracies at both steps. With ``--charts DIR`` it also saves the run's
``dissection/detectors_by_depth`` chart of those two steps as ``DIR/dissection_step_<N>.png``
and its ``layer_story.png`` as ``DIR/layer_story.png``.
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections import defaultdict
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from layerscope.training.logged import logged_scalars

TYPES = ("edge", "part", "object", "colour")  # as insight.dissection.KINDS
TAG = re.compile(r"^dissection/(edge|part|object|colour)/(\d+)_(.+)$")
PROBE = re.compile(r"^probe/(class|parts)/(\d+)_(.+)$")  # the mean over parts, not probe/parts/<part>/
FIELD = re.compile(r"^(receptive_field)/(\d+)_(.+)$")


def read_layer_scalars(run_dir: Path, pattern: re.Pattern[str]) -> dict[int, dict[str, dict[str, float]]]:
    """step -> layer tag -> kind -> value for the scalars ``pattern`` matches (groups: kind, NN, name)."""
    values: dict[int, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for tag, points in logged_scalars(run_dir, pattern.pattern).items():
        match = pattern.fullmatch(tag)
        if match:  # always: logged_scalars chose the tags with this pattern
            kind, number, name = match.groups()
            for step, value in points:
                values[step][f"{number}_{name}"][kind] = value
    return values


def read_shares(run_dir: Path) -> dict[int, dict[str, dict[str, float]]]:
    """step -> layer tag -> type -> share, from every event file under ``run_dir``."""
    shares = read_layer_scalars(run_dir, TAG)
    if not shares:
        raise SystemExit(f"no dissection scalars under {run_dir}: was it trained with insight on?")
    return shares


def print_probes(run_dir: Path) -> None:
    """Each layer's receptive field and its class and part probe accuracies, first and last step."""
    probes = read_layer_scalars(run_dir, PROBE)
    fields = read_layer_scalars(run_dir, FIELD)
    if not probes:
        return
    first, last = min(probes), max(probes)
    field = next(iter(fields.values()), {})
    kinds = [kind for kind in ("class", "parts") if any(kind in p for p in probes[last].values())]
    print(f"\nprobe accuracy (held out) at step {first} and step {last}")
    print("| layer | receptive field (px) | " + " | ".join(
        f"{kind}, step {step}" for kind in kinds for step in (first, last)) + " |")
    print("| --- | ---: |" + " ---: |" * (2 * len(kinds)))
    for layer in sorted(probes[last]):
        cells = [f"{probes[step][layer].get(kind, float('nan')):.1%}"
                 for kind in kinds for step in (first, last)]
        print(f"| `{layer}` | {field.get(layer, {}).get('receptive_field', float('nan')):.0f} | "
              + " | ".join(cells) + " |")


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
    kinds = [kind for kind in TYPES if any(kind in share for share in layers.values())]
    print(f"\nstep {step}: share of units labelled " + " / ".join(kinds) + " detectors")
    print("| layer | " + " | ".join(kinds) + " |\n| --- |" + " ---: |" * len(kinds))
    by_stage: dict[str, list[dict[str, float]]] = defaultdict(list)
    for layer in sorted(layers):
        share = layers[layer]
        by_stage[stage(layer)].append(share)
        print(f"| `{layer}` | " + " | ".join(f"{share.get(t, 0.0):.0%}" for t in kinds) + " |")
    print("\n| stage | layers | " + " | ".join(f"{kind} (mean, range)" for kind in kinds) + " |")
    print("| --- | ---: |" + " ---: |" * len(kinds))
    for name, members in by_stage.items():
        cells = []
        for kind in kinds:
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
    print_probes(args.run_dir)
    if args.charts:
        save_charts(args.run_dir, [steps[0], steps[-1]], args.charts)
        story = args.run_dir / "layer_story.png"
        if story.exists():
            shutil.copyfile(story, args.charts / "layer_story.png")


if __name__ == "__main__":
    main()

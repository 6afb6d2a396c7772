"""Reading back what a run logged: its scalars, from the TensorBoard event files in its folder."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from layerscope.errors import UserError


def logged_scalars(run_dir: Path | str, tags: str = ".*") -> dict[str, list[tuple[int, float]]]:
    """``tag -> [(step, value), ...]`` in step order, for each scalar whose whole tag matches ``tags``.

    Every event file under ``run_dir`` is read (a resumed run adds new files beside the old ones);
    a step logged twice keeps the value written last.
    """
    # Imported here: TensorBoard's reader is only needed by the few callers of this function.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(Path(run_dir).rglob("events.out.tfevents.*"), key=lambda f: (f.stat().st_mtime, f.name))
    if not files:
        raise UserError(f"no TensorBoard event files under {run_dir}: give a run folder of a run "
                        "trained with logger=tensorboard (the default)")
    wanted = re.compile(tags)
    values: dict[str, dict[int, float]] = defaultdict(dict)
    for file in files:
        events = EventAccumulator(str(file), size_guidance={"scalars": 0})  # 0: keep every value
        events.Reload()
        for tag in events.Tags()["scalars"]:
            if wanted.fullmatch(tag):
                values[tag].update((event.step, event.value) for event in events.Scalars(tag))
    return {tag: sorted(steps.items()) for tag, steps in sorted(values.items())}

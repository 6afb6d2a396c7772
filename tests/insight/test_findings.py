"""guide/what_this_run_showed: the run's own numbers, in sentences that match its scalars."""

from __future__ import annotations

import re
from pathlib import Path

from layerscope.insight.findings import first_reaching, peak
from tests.insight.conftest import EPOCHS
from tests.insight.test_insight_run import _events


def test_peak_and_first_reaching_pick_layers_from_the_input_side() -> None:
    names = ["a", "b", "c", "d"]
    assert peak([0.1, 0.5, 0.5, 0.2], names) == ("b", 0.5)  # a tie goes to the layer nearer the input
    assert first_reaching([0.1, 0.6, 0.95, 1.0], names, 0.95) == ("c", 0.95)


def _text(events, tag: str) -> tuple[int, str]:
    event = events.Tensors(f"{tag}/text_summary")[-1]
    return event.step, event.tensor_proto.string_val[0].decode()


def test_the_run_reports_where_each_detector_type_and_probe_peaked(runs: dict[str, Path]) -> None:
    events = _events(runs["default"])
    step, text = _text(events, "guide/what_this_run_showed")
    assert step == EPOCHS
    scalars = events.Tags()["scalars"]
    for kind in ("edge", "part", "object"):
        # The sentence names the layer with the largest share at the last step, and that share.
        shares = {tag.split("/")[-1]: events.Scalars(tag)[-1].value
                  for tag in sorted(scalars) if tag.startswith(f"dissection/{kind}/")}
        best = max(shares.values())
        if best == 0:
            assert f"no {kind} detectors" in text
            continue
        layer = next(name for name, value in shares.items() if value == best)
        assert f"{kind} detectors {best:.0%} of the units of `{layer}`" in text
    assert "before training (step 0)" in text and f"at the end (step {EPOCHS})" in text
    class_scores = [events.Scalars(tag)[-1].value for tag in sorted(scalars)
                    if re.fullmatch(r"probe/class/\d+_.+", tag)]
    assert f"its best was {max(class_scores):.1%}" in text
    assert "The part probes" in text and "circle at `" in text


def test_insight_off_reports_nothing(runs: dict[str, Path]) -> None:
    assert not [t for t in _events(runs["off"]).Tags()["tensors"] if t.startswith("guide/what_this")]

"""What a run's own measurements showed, in sentences, for ``guide/what_this_run_showed``.

A result that measures something the layer story is about (``DissectionResult``, ``ProbeResult``)
says what it showed through ``findings(first)``; the guide gathers them from the run's results
(``base.Results.findings``) at the end of training. The sentences report numbers; they never say
what the numbers should have been. These helpers pick the layers the sentences name.
"""

from __future__ import annotations

from collections.abc import Sequence


def peak(values: Sequence[float], names: Sequence[str]) -> tuple[str, float]:
    """The layer where ``values`` (one per layer, input side first) is highest: its name and value.

    Ties go to the layer nearest the input.
    """
    best = max(range(len(values)), key=lambda i: (values[i], -i))
    return names[best], values[best]


def first_reaching(values: Sequence[float], names: Sequence[str], share: float) -> tuple[str, float]:
    """The first layer (from the input side) whose value reaches ``share`` of the best value."""
    top = max(values)
    index = next(i for i, value in enumerate(values) if value >= share * top)
    return names[index], values[index]

"""What a run's own measurements showed, in sentences, for ``guide/what_this_run_showed``.

A view that measures something the layer story is about (the dissection, the probes) keeps its
first and latest results and says what they were through ``findings()``; the guide gathers them at
the end of training. The sentences report numbers; they never say what the numbers should have been.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import lightning as L


@runtime_checkable
class ReportsFindings(Protocol):
    """A view that can say, in a few sentences with its numbers, what it measured in this run."""

    def findings(self) -> list[str]: ...


def run_findings(trainer: L.Trainer) -> list[str]:
    """Every sentence the run's views report, in the order the views were configured."""
    return [line for callback in trainer.callbacks if isinstance(callback, ReportsFindings)
            for line in callback.findings()]


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

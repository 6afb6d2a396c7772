"""The project's own builders, registered where they are written (as timm's ``register_model``).

A builder registers under the config options that build it (``conf/model/deep.yaml`` builds
``cifar_resnet``) and under the ``_target_`` configs name it by. The registry is the one list of
them: configs read back from files may build only what it holds (``trust.py``), old
checkpoints' renamed targets are upgraded through it, and the option lists are read from it.
A registry is complete once the modules that register into it are imported: ``layerscope.models``
for models, ``layerscope.data.sources`` for data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

Builder = TypeVar("Builder", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry:
    """One registered builder: how configs name it, which options build it, its former names."""

    target: str
    builder: Callable[..., Any]
    options: tuple[str, ...]
    formerly: tuple[str, ...]


class Registry:
    """Builders of one kind. ``home`` is the package configs name them through (its ``__init__``
    exports them); None names each by the module it is written in."""

    def __init__(self, kind: str, home: str | None = None) -> None:
        self.kind, self.home = kind, home
        self._entries: dict[str, Entry] = {}

    def register(self, *options: str, formerly: tuple[str, ...] = ()) -> Callable[[Builder], Builder]:
        """Decorates a builder: ``options`` are the config options that build it (none for one
        every option uses), ``formerly`` the targets older checkpoints name it by."""

        def add(builder: Builder) -> Builder:
            module = self.home or builder.__module__
            target = f"{module}.{builder.__qualname__}"
            taken = {o for entry in self._entries.values() for o in entry.options} & set(options)
            if target in self._entries or taken:
                raise RuntimeError(f"{self.kind} {target} registered twice (options {sorted(taken)})")
            self._entries[target] = Entry(target, builder, tuple(options), tuple(formerly))
            return builder

        return add

    @property
    def targets(self) -> frozenset[str]:
        """Every registered ``_target_``: what a config read back from a file may name."""
        return frozenset(self._entries)

    @property
    def options(self) -> list[str]:
        """The config options of every builder, in the order they were registered."""
        return [option for entry in self._entries.values() for option in entry.options]

    @property
    def renamed(self) -> dict[str, str]:
        """Former targets and the current target of each."""
        return {old: entry.target for entry in self._entries.values() for old in entry.formerly}

    def entry(self, target: str) -> Entry | None:
        return self._entries.get(target)

    def for_option(self, option: str) -> Entry | None:
        return next((e for e in self._entries.values() if option in e.options), None)


MODELS = Registry("model", home="layerscope.models")
DATA = Registry("data")

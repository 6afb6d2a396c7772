"""What a config read back from a file may build: the project's own models and data sources only.

A checkpoint's model config and a run folder's saved data config are handed to Hydra's
``instantiate``, which calls whatever ``_target_`` names. Whoever made the file chose those names,
so before anything is built every ``_target_`` in the config, at any depth, must be one of the
builders registered in ``registry.py``; and no value may still hold a ``${...}`` interpolation,
which Hydra would resolve into new config (``oc.create`` makes a whole node) after this check.
Configs composed from the user's own command line and ``conf/`` are not checked: the user chose them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import layerscope.models  # noqa: F401 - registers every model builder
from layerscope.errors import UserError
from layerscope.registry import DATA, MODELS


def model_builders() -> frozenset[str]:
    """The model builders a checkpoint may name: every one in the registry."""
    return MODELS.targets


def data_builders() -> frozenset[str]:
    """The data module and sources a run folder's saved data config may name."""
    # Imported here: the data module imports Lightning, which predicting from a checkpoint never needs.
    import layerscope.data.sources  # noqa: F401 - registers every source

    return DATA.targets


def current_targets(config: Any) -> Any:
    """A copy of ``config`` (nested dicts and lists) with renamed builders under their new names."""
    if isinstance(config, Mapping):
        renamed = MODELS.renamed
        return {key: renamed.get(value, value) if key == "_target_" and isinstance(value, str)
                else current_targets(value) for key, value in config.items()}
    if _is_list(config):
        return [current_targets(item) for item in config]
    return config


def trusted(config: Any, allowed: frozenset[str], where: str, source: str) -> Any:
    """``config`` with current builder names, if every ``_target_`` in it is in ``allowed``.

    Otherwise a UserError naming the key (``where`` is the config's own dotted name) and the value:
    nothing has been built yet. ``source`` says which file the config came from.
    """
    config = current_targets(config)
    _check(config, allowed, where, source)
    return config


def _check(node: Any, allowed: frozenset[str], where: str, source: str) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            path = f"{where}.{key}"
            if key == "_target_" and not (isinstance(value, str) and value in allowed):
                raise UserError(
                    f"{source}: {path}={value!r} is not one of layerscope's own builders; refused "
                    "without running it (only checkpoints and run folders made by layerscope load here)"
                )
            _check(value, allowed, path, source)
    elif _is_list(node):
        for index, item in enumerate(node):
            _check(item, allowed, f"{where}[{index}]", source)
    elif isinstance(node, str) and "${" in node:
        raise UserError(
            f"{source}: {where}={node!r} holds an interpolation, which a saved config never does; "
            "refused without running it"
        )


def _is_list(node: Any) -> bool:
    return isinstance(node, Sequence) and not isinstance(node, str | bytes)

"""The type of every config key: the type of its value in the shipped configs, checked once at start-up.

The YAML files already declare each key's type by their values (``max_epochs: 7`` is an integer), so the
schema is the config composed from the chosen options alone, before the command line's values are put in.
A value from the command line must have the type of the value it replaces; ``null`` is allowed anywhere,
and a key whose shipped value is ``null`` or missing (``???``) takes any type, unless
``DECLARED_TYPES`` names its types (as it does for the keys that take several).

Not Hydra's structured configs: they would declare each of the shipped configs' keys a second time,
in dataclasses beside the YAML files, and OmegaConf 2.3 cannot type a key that takes a number, a
word or a list (``trainer.devices``: "Unions of containers are not supported") and turns a number
given for a text key into text without a word (``model.weights=5``).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from layerscope.errors import UserError

# Keys (dotted, fnmatch patterns) whose shipped value does not show their type: keys that take
# several types, and keys that are null unless set.
DECLARED_TYPES: dict[str, tuple[type, ...]] = {
    "resume": (bool, str),                         # false, or auto
    "ckpt_path": (str,),                           # a checkpoint file
    "batch_size": (int,),                          # eval.py: null takes the data config's
    "output": (str,),                              # predict.py: a .csv path
    "out_dir": (str,),                             # export.py: a folder
    "input": (str,),                               # predict.py: an image or a folder
    "data.train_size": (int,),                     # null: every training image
    "data.mean": (list,),                          # null: measured on the training split
    "data.std": (list,),                           # null: measured on the training split
    "data.num_workers": (int, str),                # 2, or auto
    "data.photo_augment": (bool, str),             # true, false, or auto
    "data.resize_size": (int,),                    # null: data.image_size
    "data.source.memory_budget_gb": (int, float),  # null: half the free memory
    "trainer.devices": (int, str, list),           # 2, auto, or [0, 1]
    "trainer.precision": (int, str),               # 32, or bf16-mixed
    "precision": (int, str),                       # eval.py: 32, or bf16-mixed
    "trainer.benchmark": (bool,),                  # null: Lightning decides
    "trainer.gradient_clip_val": (float,),         # null: no clipping
    "trainer.limit_*_batches": (int, float),       # a number of batches, or a fraction of them
    "model.weights": (str,),                       # DEFAULT, a weights name, or a state dict's path
    "model.layers": (int, str),                    # how many layers the views show, or all
    "logger.*.version": (int, str),                # TensorBoard's version folder: version_3, or a name
}

# How each type is named in a message.
TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text", list: "a list",
              dict: "a mapping"}

# Stands for a key the config lacks, or a value that cannot be resolved before the run.
ABSENT = object()


def check_types(schema: DictConfig, cfg: DictConfig) -> None:
    """Raise a one-line :class:`UserError` for the first value of ``cfg`` of another type than in ``schema``.

    ``schema`` is the config composed without the command line's values; only keys whose value differs
    between the two are looked at (every other one is the shipped value itself). Hydra's own settings
    are left to Hydra, which checks them against its own schema.
    """
    shipped = OmegaConf.to_container(schema, resolve=False)
    given = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(shipped, dict) and isinstance(given, dict)
    for key in _changed_keys(shipped, given, prefix=""):
        if key == "hydra" or key.startswith("hydra."):
            continue
        check_value(key, resolved(cfg, key), resolved(schema, key))


def check_value(key: str, value: Any, shipped: Any) -> None:
    """Raise a one-line :class:`UserError` unless ``value`` may stand where ``shipped`` stands at ``key``."""
    if value is None or value is ABSENT:
        return
    allowed = expected_types(key, shipped)
    if allowed is None:
        return
    if _is_instance(value, allowed):
        # A list of one kind of item: each item given must be of that kind.
        if isinstance(value, list) and isinstance(shipped, list) and len({type(i) for i in shipped}) == 1:
            for index, item in enumerate(value):
                check_value(f"{key}[{index}]", item, shipped[0])
        return
    wanted = " or ".join(TYPE_NAMES.get(t, t.__name__) for t in allowed)
    example = f" (e.g. {key}={_as_override(shipped)})" if len(allowed) == 1 else ""
    raise UserError(f"{key}={_as_override(value)} is not {wanted}{example}")


def expected_types(key: str, shipped: Any) -> tuple[type, ...] | None:
    """The types ``key`` accepts, or None when any value goes (a null, missing or unresolvable default)."""
    for pattern, types in DECLARED_TYPES.items():
        if fnmatchcase(key, pattern):
            return types
    if shipped is None or shipped is ABSENT:
        return None
    for kind in (bool, int, float, str, list, dict):  # bool first: True is an int to Python
        if isinstance(shipped, kind):
            return (kind,)
    return None


def _is_instance(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int) and float in allowed:
        return True  # 1 where 1.0 stands
    return isinstance(value, allowed)


def _changed_keys(shipped: Any, given: Any, prefix: str) -> list[str]:
    """Dotted keys present in both whose values differ, down to the deepest mapping both hold."""
    if isinstance(shipped, dict) and isinstance(given, dict):
        keys: list[str] = []
        for name in given.keys() & shipped.keys():
            keys += _changed_keys(shipped[name], given[name], f"{prefix}.{name}" if prefix else str(name))
        return keys
    # Types compared too: true == 1 to Python.
    return [prefix] if type(shipped) is not type(given) or shipped != given else []


def resolved(cfg: DictConfig, key: str) -> Any:
    """The plain value at ``key``, interpolations resolved; ``ABSENT`` where it cannot be resolved yet.

    A value that refers to something only known once Hydra runs (``${hydra:...}``) or still missing
    (``???``) is checked where it is used instead.
    """
    try:
        node = OmegaConf.select(cfg, key, default=ABSENT, throw_on_missing=True)
    except Exception:  # an interpolation that cannot resolve before the run: nothing to compare
        return ABSENT
    if isinstance(node, DictConfig | ListConfig):
        try:
            return OmegaConf.to_container(node, resolve=True)
        except Exception:
            return ABSENT
    return node


def _as_override(value: Any) -> str:
    """``value`` as it is written on the command line."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, list):
        return "[" + ",".join(_as_override(item) for item in value) + "]"
    return str(value)

"""Check a command line before Hydra runs anything: group options, key names and value types.

The checks ask Hydra's own config loader, over the same search path Hydra will use (the shipped
configs, ``--config-dir``, ``hydra.searchpath``), so options and keys a user adds are known. Each
mistake ends in one line, before a run folder exists. Whatever these checks do not understand (a
syntax error, ``--config-path``) is left to Hydra, which reports it as it always does.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from pathlib import Path

# Hydra's own loader and argument parser, as hydra.main uses them: Hydra 1.3 offers no public way to
# compose over the search path that --config-dir and hydra.searchpath make.
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path, get_args_parser
from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, ValueType
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from layerscope.apps.schema import check_types, check_value, resolved
from layerscope.errors import UserError

# Sweeps whose values can be listed, and so checked one by one.
LISTED_SWEEPS = (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP, ValueType.RANGE_SWEEP)


def check_command_line(config_dir: Path, config_name: str, argv: list[str]) -> None:
    """Raise a one-line :class:`UserError` for the first mistake in ``argv`` (what follows the program)."""
    args = get_args_parser().parse_args(argv)
    if args.help or args.hydra_help or args.info or args.shell_completion or args.config_path:
        return
    loader = ConfigLoaderImpl(_search_path(config_dir, args.config_dir))
    config_name = args.config_name or config_name
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
        if not args.multirun and any(o.is_sweep_override() for o in overrides):
            return  # Hydra explains that sweeping needs --multirun
        options = {o.key_or_group: _group_options(loader, config_name, args.overrides, o) for o in overrides}
        picks = {o.key_or_group: _group_choices(o, options[o.key_or_group])
                 for o in overrides if options[o.key_or_group]}
        # The overrides that set (or delete) values; shipped options and Hydra's settings need no check.
        values = [o for o in overrides
                  if not (o.key_or_group in picks or o.is_hydra_override() or o.is_add())]
        for variant in _variants(overrides, picks) if values else []:
            _check_variant(loader, config_name, variant, values, picks)
    except (HydraException, OmegaConfBaseException):
        return  # a mistake these checks do not know (a syntax error, a bad hydra.searchpath): Hydra says it


def _search_path(config_dir: Path, user_config_dir: str | None) -> ConfigSearchPath:
    """Hydra's search path for ``config_dir``, with ``--config-dir`` in front as Hydra puts it."""
    search_path = create_config_search_path(str(config_dir))
    if user_config_dir is not None:
        folder = Path(os.path.abspath(user_config_dir))
        if not folder.is_dir():
            raise UserError(f"--config-dir {user_config_dir} is not a folder: give a folder of configs")
        search_path.prepend(provider="command-line", path=f"file://{folder}",
                            anchor=SearchPathQuery(provider="schema"))
    return search_path


def _group_options(
    loader: ConfigLoaderImpl, config_name: str, argv: list[str], override: Override
) -> list[str]:
    """The options Hydra knows for the group ``override`` sets; none where it sets a value."""
    if override.is_delete() or "." in override.key_or_group:
        return []
    return sorted(loader.get_group_options(override.key_or_group, config_name=config_name, overrides=argv))


def _group_choices(override: Override, options: list[str]) -> list[str | None]:
    """The options a group override picks, each checked against the ``options`` Hydra knows."""
    group = override.key_or_group
    if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
        matched: list[str | None] = list(override.value().filter(options))
        if not matched:
            raise UserError(f"{override.input_line} matches no option: choose from {', '.join(options)}")
        return matched
    if override.value_type in (ValueType.RANGE_SWEEP, ValueType.INTERVAL_SWEEP):
        raise UserError(f"{override.input_line} is not an option: choose one of {', '.join(options)} "
                        "(sweep options with choice(...) or glob(...))")
    if override.is_sweep_override():
        choices = [None if c == "null" else c for c in override.sweep_string_iterator()]
    else:
        value = override.value()
        choices = [None if value is None else str(value)]
    for choice in choices:
        if choice is not None and choice not in options:
            raise UserError(f"{group}={choice} is not an option: choose one of {', '.join(options)}")
    return choices


def _variants(overrides: list[Override], picks: dict[str, list[str | None]]) -> Iterator[list[str]]:
    """Command lines to compose: each option of each swept group in turn (not every combination),
    the others at their first option; value sweeps are left out (their values are checked one by one)."""
    first = {group: choices[0] for group, choices in picks.items()}
    swept = [(group, choice) for group, choices in picks.items() for choice in choices[1:]]
    for changed in [{}, *({group: choice} for group, choice in swept)]:
        chosen = {**first, **changed}
        yield [_as_line(o, chosen[o.key_or_group]) if o.key_or_group in chosen else o.input_line
               for o in overrides if o.key_or_group in chosen or not o.is_sweep_override()]


def _as_line(override: Override, choice: str | None) -> str:
    prefix = "+" * (override.is_add() + 2 * override.is_force_add())
    package = f"@{override.package}" if override.package is not None else ""
    return f"{prefix}{override.key_or_group}{package}={'null' if choice is None else choice}"


def _check_variant(
    loader: ConfigLoaderImpl, config_name: str, variant: list[str], values: list[Override],
    picks: dict[str, list[str | None]],
) -> None:
    """Compose ``variant`` without its ``values`` (the schema) and with them, and compare the two."""
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(variant)
    # The schema: the chosen options, Hydra's settings and new keys (+key=...), without values.
    shipped_lines = [o.input_line for o in parsed
                     if o.key_or_group in picks or o.is_hydra_override() or o.is_add()]
    schema = _compose(loader, config_name, shipped_lines)
    if schema is None:
        return
    for override in values:
        if override.is_force_add():
            continue  # ++key=value sets the key whether or not it is there
        key = override.key_or_group
        if not _has_key(schema, key):
            raise UserError(_unknown_key_message(schema, key, adding=not override.is_delete()))
        if override.value_type in LISTED_SWEEPS:
            for value in override.sweep_iterator():
                check_value(key, value, resolved(schema, key))
    if len(shipped_lines) < len(variant):
        cfg = _compose(loader, config_name, variant)
        if cfg is not None:
            check_types(schema, cfg)


def _compose(loader: ConfigLoaderImpl, config_name: str, overrides: list[str]) -> DictConfig | None:
    """The config Hydra would compose, or None when Hydra would refuse it (it then says why itself)."""
    try:
        return loader.load_configuration(config_name, overrides, RunMode.RUN)
    except (HydraException, OmegaConfBaseException, OSError):
        return None


def _has_key(cfg: DictConfig, key: str) -> bool:
    """Whether the config holds ``key``, found without resolving values (some resolve only in a run)."""
    parent_key, _, name = key.rpartition(".")
    try:
        parent = OmegaConf.select(cfg, parent_key, throw_on_missing=False) if parent_key else cfg
    except OmegaConfBaseException:
        return False
    if isinstance(parent, ListConfig):
        return name.isdigit() and int(name) < len(parent)
    # keys(), not `in`: `in` counts a missing value (???) as no key.
    return isinstance(parent, DictConfig) and name in parent.keys()  # noqa: SIM118


def _unknown_key_message(cfg: DictConfig, key: str, adding: bool) -> str:
    """One line naming ``key`` and the closest keys the config has."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    keys = list(_dotted_keys({k: v for k, v in plain.items() if k != "hydra"}, prefix=""))
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else "list the keys with --cfg job"
    return f"{key} is not a key of this config: {hint}" + (f" (+{key}=... adds a new key)" if adding else "")


def _dotted_keys(node: object, prefix: str) -> Iterator[str]:
    if isinstance(node, dict):
        for name, value in node.items():
            key = f"{prefix}.{name}" if prefix else str(name)
            yield key
            yield from _dotted_keys(value, key)

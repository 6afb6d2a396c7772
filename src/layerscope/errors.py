"""The one exception type for mistakes a user can fix (bad override, bad file, missing data),
and the check of integer settings that raises it."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """An error caused by input, not by a bug: the entry points print its message as one line.

    The message should name the offending config key or path and say what to do instead.
    """


def check_int(key: str, value: Any, minimum: int = 1, allow_none: bool = False) -> None:
    """Raise a :class:`UserError` naming ``key`` unless ``value`` is an integer >= ``minimum``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{key}={value} must be an integer >= {minimum}")

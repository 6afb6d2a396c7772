"""The one exception type for mistakes a user can fix (bad override, bad file, missing data)."""


class UserError(Exception):
    """An error caused by input, not by a bug: the entry points print its message as one line.

    The message should name the offending config key or path and say what to do instead.
    """

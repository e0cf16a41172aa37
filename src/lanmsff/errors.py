"""Errors that are the user's to fix.

Anything raised as :class:`UserError` (or a subclass) is reported by the command-line
entry points as a one-paragraph message without a traceback, and the process exits with
status 2. Everything else is a bug or a runtime failure and keeps its traceback.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input: a path, a file, or a command-line argument."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work; the message names the key and the allowed values."""


def check_choice(key: str, value: object, allowed: tuple | list) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{key}={value!r} is not valid; allowed values: {choices}")

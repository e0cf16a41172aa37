"""Keep third-party noise off the console: known warnings and tips that a user cannot act on.

Each entry of :data:`KNOWN_NOISE` names the logger (for Python warnings, the warning's file) and a piece
of the message, so nothing else is hidden. The messages still reach the run's log file: Python warnings
are routed into logging (``logging.captureWarnings``), Lightning's own console handler gives way to the
root logger's handlers (Hydra's console and file handlers), and only the console handlers get the filter.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Noise:
    """A console message to hold back: ``logger`` prefix and ``pattern`` (a regular expression) on the
    message; for a Python warning the logger is ``py.warnings`` and ``source`` a piece of the warning's
    file path."""

    logger: str
    pattern: str
    source: str = ""
    why: str = ""

    def matches(self, record: logging.LogRecord) -> bool:
        if not (record.name == self.logger or record.name.startswith(self.logger + ".")):
            return False
        message = record.getMessage()
        return bool(re.search(self.pattern, message)) and self.source in message


KNOWN_NOISE: tuple[Noise, ...] = (
    Noise("pytorch_lightning", r"Tip: .*\blit(logger|models)\b", why="advertises a hosted service"),
    Noise("lightning_fabric", r"Tip: .*\blit(logger|models)\b", why="advertises a hosted service"),
    Noise("pytorch_lightning", r"^TPU available: False|^HPU available: False", why="no such device here"),
    Noise(
        "py.warnings",
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        source="pytorch_lightning/utilities/_pytree.py",
        why="Lightning's use of a torch API; nothing for the user to change",
    ),
    Noise(
        "py.warnings",
        r"The `srun` command is available on your system but is not used",
        source="lightning_fabric/plugins/environments/slurm.py",
        why="SLURM runs go through hydra/launcher=slurm (submitit), which uses srun itself",
    ),
)


class ConsoleNoiseFilter(logging.Filter):
    """Drops the records that match :data:`KNOWN_NOISE`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(noise.matches(record) for noise in KNOWN_NOISE)


def _is_console(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return not isinstance(handler, logging.FileHandler) and stream in (sys.stderr, sys.stdout, sys.__stderr__)


def quiet_console() -> None:
    """Hold :data:`KNOWN_NOISE` back from the console, keeping it in the log files (idempotent).

    Call it once logging is configured (the entry points do, after Hydra set up its handlers).
    """
    logging.captureWarnings(True)
    root = logging.getLogger()
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        framework = logging.getLogger(name)
        if root.handlers and not framework.propagate:  # Lightning's own console handler, set at import
            for handler in [h for h in framework.handlers if _is_console(h)]:
                framework.removeHandler(handler)
            framework.propagate = True
    for handler in root.handlers:
        if _is_console(handler) and not any(isinstance(f, ConsoleNoiseFilter) for f in handler.filters):
            handler.addFilter(ConsoleNoiseFilter())


class ConsoleFormatter(logging.Formatter):
    """Short console lines: an INFO record is its message; a warning or error starts with its level
    (``warning: ...``). The run's log file keeps the full format (time, logger, level)."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno <= logging.INFO else f"{record.levelname.lower()}: {message}"

"""Logging set-up: a console handler for the command line and a ``train.log`` file per run.

Both attach to the loggers of this project's packages (:data:`LOGGERS`), never to the root
logger, so a host application's own logging is left alone.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

#: Top-level loggers of the project's packages.
LOGGERS = ("brats", "cascade", "ensemble")
CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: File name of the log :func:`run_log` writes into a run folder.
RUN_LOG = "train.log"


class _ConsoleHandler(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment, so a replaced stderr is followed."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


class _RunLogHandler(logging.FileHandler):
    """The file handler of one :func:`run_log` block."""


_HANDLERS = (_ConsoleHandler, _RunLogHandler)


def _sync_level(logger: logging.Logger) -> None:
    """Set the logger's level to the lowest of its console and run-log handlers' levels, so each
    handler sees every record it wants and filters the rest itself."""
    levels = [h.level for h in logger.handlers if isinstance(h, _HANDLERS)]
    logger.setLevel(min(levels))


def configure_logging(verbosity: int = 0) -> None:
    """Log the project's messages to stderr: ``verbosity`` < 0 WARNING (``--quiet``), 0 INFO,
    > 0 DEBUG (``--verbose``). Calling it again replaces the earlier console handler."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
            logger.removeHandler(old)
        handler = _ConsoleHandler()
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
        handler.setLevel(level)
        logger.addHandler(handler)
        _sync_level(logger)


@contextmanager
def run_log(folder: str | os.PathLike[str], level: int = logging.INFO) -> Iterator[Path]:
    """Append the project's log messages from ``level`` up, with timestamps, to
    ``folder/train.log`` while the block runs (whatever the console shows); the handler is
    removed, the file closed and the loggers' levels restored afterwards.

    Yields:
        The log file's path.
    """
    path = Path(folder) / RUN_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _RunLogHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.setLevel(level)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        _sync_level(logger)
    try:
        yield path
    finally:
        for logger, old_level in zip(loggers, saved):
            logger.removeHandler(handler)
            if any(isinstance(h, _HANDLERS) for h in logger.handlers):
                _sync_level(logger)
            else:
                logger.setLevel(old_level)
        handler.close()

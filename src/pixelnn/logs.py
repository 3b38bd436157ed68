"""Where the library's log messages go when PixelNN runs as a command.

Library modules log through `logging.getLogger(__name__)` and configure nothing: a program that imports
pixelnn decides where its messages go. The command line calls `console` once per run: INFO messages (what
a verb did) go to stdout, warnings and errors to stderr, both as plain lines, between tqdm's progress bars.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

ROOT = "pixelnn"  # the parent of every library logger (modules are named pixelnn.*)


class ConsoleFormatter(logging.Formatter):
    """The message alone, prefixed 'warning: ' or 'error: ' from WARNING up.

    >>> record = logging.makeLogRecord({"msg": "bank %s is old", "args": ("b",), "levelno": logging.WARNING})
    >>> ConsoleFormatter().format(record)
    'warning: bank b is old'
    """

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {text}"
        if record.levelno >= logging.WARNING:
            return f"warning: {text}"
        return text


class ConsoleHandler(logging.StreamHandler):
    """Writes INFO and below to the current sys.stdout, WARNING and above to the current sys.stderr
    (looked up at each message, so redirections made after it was built are followed), through
    tqdm.write when tqdm is loaded so that a progress bar is not torn."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(ConsoleFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            text = self.format(record)
            tqdm = sys.modules.get("tqdm")
            if tqdm is not None:
                tqdm.tqdm.write(text, file=stream)
            else:
                stream.write(text + "\n")
            stream.flush()
        except Exception:  # logging's own convention: a failed message never stops the program
            self.handleError(record)


@contextmanager
def console(level: int = logging.INFO) -> Iterator[logging.Handler]:
    """Show the library's messages from `level` up on the console for the duration of the block.

    The 'pixelnn' logger gets a ConsoleHandler and stops passing records to the root logger (so a
    program that configured logging itself does not see them twice); everything is put back after.
    """
    logger = logging.getLogger(ROOT)
    handler = ConsoleHandler()
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]

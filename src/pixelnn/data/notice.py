"""Warnings for data that is partly unusable: the run goes on, but the user should know."""

from __future__ import annotations

import os
import sys
import warnings

_HERE = os.path.dirname(os.path.abspath(__file__))


class DataWarning(UserWarning):
    """Some files were skipped, unmatched or left without a label."""


def warn_data(message: str) -> None:
    """Emit `message` as a DataWarning attributed to the first caller outside pixelnn.data."""
    level, frame = 2, sys._getframe(1)
    while frame.f_back is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _HERE:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DataWarning, stacklevel=level)


def examples(items: list[str], limit: int = 3) -> str:
    """'a, b, c' or 'a, b, c, ... (+7 more)' for messages."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... (+{len(items) - limit} more)"

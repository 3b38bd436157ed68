"""Integers typed by users: ASCII digits only (int() also takes '١٢', '1_000' and ' 7 ')."""

from __future__ import annotations

import re

_INTEGER = re.compile(r"[+-]?[0-9]+")


def strict_int(text: str) -> int:
    """An integer written in ASCII digits with an optional sign; ValueError otherwise.

    >>> strict_int(" -42 ")
    -42
    >>> strict_int("1_000")
    Traceback (most recent call last):
    ...
    ValueError: not an integer: '1_000'
    """
    text = str(text).strip()
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"not an integer: {text!r}")
    return int(text)

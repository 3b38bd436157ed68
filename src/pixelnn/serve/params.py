"""Reading the form fields of a request into checked values; every failure is a RequestError (4xx)."""

from __future__ import annotations

from ..errors import PixelNNError
from ..numbers import strict_int
from ..synth import LIKE_K
from ..synth import grid as grids
from ..synth.request import Limits

# the page's default: 10 candidates from 5 neighbours (a few seconds, where paper72 takes ~4x longer)
QUICK = "1:1:1,1:2:1,1:3:1,1:1:3,3:1:3,5:1:3,1:1:whole,2:1:whole,3:1:whole,5:1:whole"
GRIDS = {"quick": QUICK, "paper72": "paper72", "global": "global"}
DEFAULT_GRID = "quick"
LIMITS = Limits(candidates=100, neighbours=50, windows=6)  # tighter than the CLI's: a request is seconds of work
MAX_TEXT = 2000


class RequestError(PixelNNError):
    """A request the server refuses, with the HTTP status to answer and a message for the user."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def text(form, name: str, default: str | None = None) -> str | None:
    value = form.get(name)
    if value is None or value.strip() == "":
        return default
    if len(value) > MAX_TEXT:
        raise RequestError(f"field {name!r} is longer than {MAX_TEXT} characters")
    return value.strip()


def integer(value: str | None, name: str, lo: int, hi: int) -> int:
    """An integer form value within lo..hi (inclusive)."""
    try:
        number = strict_int(value)
    except ValueError:
        raise RequestError(f"{name} must be an integer, got {_show(value)}") from None
    if not lo <= number <= hi:
        raise RequestError(f"{name} must be in {lo}..{hi}, got {number}")
    return number


def grid(form) -> tuple[str, list[grids.Spec]]:
    """The candidate grid: a name (quick, paper72, global) or 'n:first:window,...' (its limits: LIMITS)."""
    value = text(form, "grid", DEFAULT_GRID)
    return value, grids.parse(GRIDS.get(value, value))  # ConfigError (a 400) for a malformed string


def copy_mode(form) -> str:
    """How pixels are copied (synth/coherence.py), default the library's."""
    from ..synth.coherence import COPY_MODES, DEFAULT_COPY

    value = text(form, "copy", DEFAULT_COPY)
    if value not in COPY_MODES:
        raise RequestError(f"copy must be one of {', '.join(COPY_MODES)}, not {_show(value)}")
    return value


def label_choices(bank_labels: list[str | None]) -> list[str]:
    """Every label in the bank and every parent of one ('Boots' for 'Boots/Ankle'), sorted."""
    choices = set()
    for label in bank_labels:
        parts = (label or "").split("/")
        choices.update("/".join(parts[: i + 1]) for i in range(len(parts)) if label)
    return sorted(choices)


def labels(form, choices: list[str]) -> list[str] | None:
    """Labels to restrict the exemplars to, each one of `choices`; None when none are given."""
    values = [v.strip() for v in form.getlist("labels") if v.strip()]
    if not values:
        return None
    unknown = [v for v in values if v not in choices]
    if unknown:
        known = ", ".join(choices[:12]) or "none (the bank has no labels)"
        raise RequestError(f"unknown label {_show(unknown[0])}; labels in this bank: {known}")
    return values


def ids(form, bank_size: int) -> list[int] | None:
    """Comma-separated bank ids, each checked against the bank."""
    value = text(form, "ids")
    if value is None:
        return None
    return [integer(item, "an exemplar id", 0, bank_size - 1) for item in value.split(",") if item.strip()] or None


def like_k(form, bank_size: int) -> int:
    """How many exemplars nearest the example image to keep (at most the whole bank)."""
    return min(integer(text(form, "like_k", str(LIKE_K)), "like_k", 1, 100_000), max(bank_size, 1))


def _show(value) -> str:
    """A user's value quoted for a message, cut short."""
    value = repr(value)
    return value if len(value) <= 60 else value[:57] + "..."

"""Candidate grids: each candidate is (n neighbours, first rank, window).

The default is the 72 candidates of the authors' code: (n, first rank) in {1 at ranks 1..10,
3 at ranks 1, 3, 5, 7, 9, 5 at ranks 1, 4, 7} times window in {1, 3, 5, whole image}. A candidate
copies, for every pixel, from the best pixel in its window over the exemplars of global ranks
first .. first + n - 1. (1, r, 1) is the paper's global match (Eq. 2) with the r-th neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..search.pixel_match import WHOLE


@dataclass(frozen=True, order=True)
class Spec:
    n: int  # number of global neighbours pooled
    first: int  # 1-based rank of the first of them
    window: int  # T of the T x T window, or WHOLE (0) for the whole image

    @property
    def ranks(self) -> range:
        """0-based ranks of the neighbours this candidate copies from."""
        return range(self.first - 1, self.first - 1 + self.n)

    def __str__(self) -> str:
        return f"{self.n}:{self.first}:{'whole' if self.window == WHOLE else self.window}"


def authors_72() -> list[Spec]:
    pools = [(1, r) for r in range(1, 11)] + [(3, r) for r in (1, 3, 5, 7, 9)] + [(5, r) for r in (1, 4, 7)]
    return [Spec(n, r, w) for n, r in pools for w in (1, 3, 5, WHOLE)]


def global_matches(k: int = 10) -> list[Spec]:
    """Eq. 2: the k nearest exemplars copied whole (f(x) + y_k - f(x_k))."""
    return [Spec(1, r, 1) for r in range(1, k + 1)]


NAMED = {"paper72": authors_72, "global": global_matches}


def parse(text: str) -> list[Spec]:
    """'paper72', 'global', or comma-separated 'n:first:window' items (window an int or 'whole')."""
    text = text.strip()
    if text in NAMED:
        return NAMED[text]()
    specs = []
    for item in text.split(","):
        parts = item.strip().split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            n, first = int(parts[0]), int(parts[1])
            window = WHOLE if parts[2] in ("whole", "full", "0") else int(parts[2])
        except ValueError:
            raise ConfigError(
                f"bad candidate {item.strip()!r}: write n:first:window, e.g. 5:1:3 or 10:1:whole "
                f"(or use one of: {', '.join(NAMED)})"
            ) from None
        if n < 1 or first < 1 or window < 0:
            raise ConfigError(f"bad candidate {item.strip()!r}: n and first must be >= 1 and window >= 1 or 'whole'")
        specs.append(Spec(n, first, window))
    return specs


def neighbours_needed(specs: list[Spec]) -> int:
    return max(s.first - 1 + s.n for s in specs)

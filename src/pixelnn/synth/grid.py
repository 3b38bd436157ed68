"""Candidate grids: each candidate is (n neighbours, first rank, window).

The default is the 72 candidates of the authors' code: (n, first rank) in {1 at ranks 1..10,
3 at ranks 1, 3, 5, 7, 9, 5 at ranks 1, 4, 7} times window in {1, 3, 5, whole image}. A candidate
copies, for every pixel, from the best pixel in its window over the exemplars of global ranks
first .. first + n - 1. (1, r, 1) is the paper's global match (Eq. 2) with the r-th neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import ConfigError
from ..numbers import strict_int
from ..search.pixel_match import LOCAL_MAX, WHOLE

# what one synthesis may ask for (synth/request.py: Limits; the web app has tighter limits, serve/params.py)
MAX_CANDIDATES = 500
MAX_NEIGHBOURS = 200
MAX_WINDOWS = 12
MAX_SEARCH_BYTES = 4 * 2**30  # estimated memory of the pixel search of one synthesis
FAST_BLOCK, SEED_WINDOW = 8, 5  # as in search/fast_match.py


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


def paper72() -> list[Spec]:
    """The paper's 72 candidates: 18 pools of neighbours (n from rank r) times windows 1, 3, 5 and the whole image."""
    pools = [(1, r) for r in range(1, 11)] + [(3, r) for r in (1, 3, 5, 7, 9)] + [(5, r) for r in (1, 4, 7)]
    return [Spec(n, r, w) for n, r in pools for w in (1, 3, 5, WHOLE)]


def global_matches(k: int = 10) -> list[Spec]:
    """Eq. 2: the k nearest exemplars copied whole (f(x) + y_k - f(x_k))."""
    return [Spec(1, r, 1) for r in range(1, k + 1)]


NAMED = {"paper72": paper72, "global": global_matches}


def parse(text: str) -> list[Spec]:
    """'paper72', 'global', or comma-separated 'n:first:window' items (window an int or 'whole').

    >>> [str(s) for s in parse("5:1:3, 10:1:whole")]
    ['5:1:3', '10:1:whole']
    >>> len(parse("paper72"))
    72
    """
    text = text.strip()
    if text in NAMED:
        return NAMED[text]()
    specs = []
    for item in text.split(","):
        parts = item.strip().split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            n, first = strict_int(parts[0]), strict_int(parts[1])
            whole = parts[2].strip() in ("whole", "full")
            window = WHOLE if whole else strict_int(parts[2])
        except ValueError:
            raise ConfigError(
                f"bad candidate {item.strip()!r}: write n:first:window, e.g. 5:1:3 or 10:1:whole "
                f"(or use one of: {', '.join(NAMED)})"
            ) from None
        if n < 1 or first < 1 or (window < 1 and not whole):
            raise ConfigError(f"bad candidate {item.strip()!r}: n and first must be >= 1 and window >= 1 or 'whole'")
        specs.append(Spec(n, first, window))
    return specs


def neighbours_needed(specs: list[Spec]) -> int:
    """How many global neighbours a grid reaches: the deepest rank any candidate copies from.

    >>> neighbours_needed(parse("3:9:1,1:1:whole"))
    11
    """
    return max(s.first - 1 + s.n for s in specs)


def fitted(specs: list[Spec], size: int) -> list[Spec]:
    """The grid for S x S outputs: a window of 2S - 1 or more already covers the whole image.

    >>> [str(s) for s in fitted(parse("1:1:5,1:1:7"), size=4)]
    ['1:1:5', '1:1:whole']
    """
    return [replace(s, window=WHOLE) if s.window >= 2 * size - 1 else s for s in specs]


def search_bytes(specs: list[Spec], size: int, dim: int, fast: bool) -> int:
    """Rough peak memory of the pixel search for a grid: the exemplars' descriptors and the
    similarities of the window search (see search/pixel_match.py and search/fast_match.py)."""
    K, P = neighbours_needed(specs), size * size
    small = [s.window for s in specs if s.window != WHOLE]
    if fast:
        windows = set(small) | ({SEED_WINDOW} if len(small) < len(specs) else set())
        r = max(w // 2 for w in windows)
        blocks, R, BB = math.ceil(size / FAST_BLOCK) ** 2, FAST_BLOCK + 2 * r, FAST_BLOCK**2
        widest = max(w * w for w in windows)  # candidates per block pixel in the widest window
        base = 4 * K * (P * dim + blocks * R * R * (BB + dim))  # gathered descriptors, regions, similarities
        per_window = 3 * 4 * K * blocks * BB * widest  # gathered, masked and tie-broken copies (float32/int32)
        geometry = 24 * blocks * BB * sum(w * w for w in windows)  # int64 sources and masks, kept per window
        return base + per_window + geometry
    r = max([w // 2 for w in small if w <= LOCAL_MAX] + [0])
    # the K exemplars' full hypercolumns: the upsampled taps, the hypercolumn and its normalised copy
    # (measured: 2.4 GiB for K=50 at 64x64, 1472-d; this says 2.9)
    return 4 * (5 * K * dim * P // 2 + dim * (size + 2 * r) ** 2 + 1024 * P * 2)


def check_budget(specs: list[Spec], size: int, dim: int, fast: bool) -> None:
    """Refuse, before any work, a grid whose pixel search would need more memory than MAX_SEARCH_BYTES
    (the counts of candidates, neighbours and windows are a request's limits: synth/request.py)."""
    need = search_bytes(specs, size, dim, fast)
    if need > MAX_SEARCH_BYTES:
        raise ConfigError(
            f"the grid's pixel search would need about {need / 2**30:.1f} GiB for {size}x{size} outputs; "
            f"the limit is {MAX_SEARCH_BYTES / 2**30:g} GiB (use smaller windows, 'whole', or fewer neighbours)"
        )

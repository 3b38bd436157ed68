"""A training loop under a wall-clock budget, shared by stage 1 and the pix2pix baseline.

The budget counts only time spent in training steps, kept in `state["elapsed_s"]` across runs, so
an interrupted run resumes where it stopped; the caller's `save` writes an atomic checkpoint every
`save_every_s` and at the end.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
from tqdm import tqdm


def batches(n: int, batch: int, rng: np.random.Generator):
    """Index arrays of one shuffled epoch (the last short batch dropped; one batch if n < batch)."""
    order = rng.permutation(n)
    for i in range(0, n - batch + 1 if n >= batch else 1, batch):
        yield order[i : i + batch]


def run(
    state: dict,
    n: int,
    batch: int,
    budget_s: float,
    step: Callable[[np.ndarray, float], dict[str, float]],
    save: Callable[[], None],
    *,
    desc: str,
    rng: np.random.Generator,
    max_epochs: int = 1000,
    max_steps: int = 0,
    save_every_s: float = 60.0,
) -> None:
    """Call step(batch indices, elapsed seconds) -> losses until the budget (or a limit) is spent.

    state holds step, epoch, elapsed_s and history (one mean of each loss per epoch); it is
    updated in place, marked done and saved at the end.
    """

    def spent() -> bool:
        return state["elapsed_s"] >= budget_s or (max_steps > 0 and state["step"] >= max_steps)

    bar = tqdm(
        total=budget_s,
        initial=min(state["elapsed_s"], budget_s),
        desc=desc,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s {postfix}",
    )
    last_save = time.monotonic()
    while not spent() and state["epoch"] < max_epochs:
        losses: list[dict[str, float]] = []
        for idx in batches(n, batch, rng):
            t0 = time.monotonic()
            losses.append(step(idx, state["elapsed_s"]))
            dt = time.monotonic() - t0
            state["elapsed_s"] += dt
            state["step"] += 1
            bar.update(min(dt, max(budget_s - bar.n, 0)))
            first = next(iter(losses[-1]))
            bar.set_postfix(epoch=state["epoch"], **{first: f"{np.mean([v[first] for v in losses[-20:]]):.4f}"})
            if time.monotonic() - last_save > save_every_s:
                save()
                last_save = time.monotonic()
            if spent():
                break
        state["epoch"] += 1
        means = {k: float(np.mean([v[k] for v in losses])) for k in losses[0]}
        state["history"].append({"epoch": state["epoch"], "elapsed_s": state["elapsed_s"], **means})
    bar.close()
    state["done"] = True
    save()

"""A training loop under a budget of steps, epochs and wall-clock time, shared by stage 1 and pix2pix.

Training stops at whichever limit comes first: `max_steps`, `max_epochs` (0: none) or `budget_s`
seconds of time spent in training steps (inf: none). The time is kept in `state["elapsed_s"]`
across runs, so an interrupted run resumes where it stopped; the caller's `save` writes an atomic
checkpoint every `save_every_s` and at the end. `step` receives the fraction of the budget done
(the largest of the three), which drives its learning-rate schedule.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError
from ..fileio import write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    seconds: float = math.inf
    steps: int = 0  # 0: no limit
    epochs: int = 0  # 0: no limit

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.steps < 0 or self.epochs < 0:
            raise ConfigError(
                f"training limits must be positive: {self.seconds} s, {self.steps} steps, {self.epochs} epochs"
            )
        if math.isinf(self.seconds) and not self.steps and not self.epochs:
            raise ConfigError("give a training budget: minutes, steps or epochs")

    @classmethod
    def of(cls, minutes: float | None, steps: int = 0, epochs: int = 0, default_minutes: float = 20.0) -> Limits:
        """Minutes cap the steps and epochs; with none of the three, `default_minutes`."""
        if minutes is None:
            minutes = math.inf if (steps or epochs) else default_minutes
        return cls(minutes * 60.0, steps, epochs)

    def describe(self) -> str:
        parts = [f"{self.steps} steps"] * bool(self.steps) + [f"{self.epochs} epochs"] * bool(self.epochs)
        if not math.isinf(self.seconds):
            parts.append(f"{self.seconds / 60:g} min")
        return " or ".join(parts) + " (whichever comes first)" * (len(parts) > 1)


RESUMED = ("step", "epoch", "elapsed_s", "history")  # the training state a checkpoint carries on
HISTORY = "history.jsonl"  # one JSON line per epoch beside the checkpoint: step, time, images/s, mean losses


def write_history(path: Path, history: list[dict]) -> None:
    """Rewrite the whole history file atomically (it is small: one line per epoch)."""
    write_text(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in history))


def fresh_state(cfg) -> dict:
    """The training state of a new run (a dataclass of training options `cfg`): nothing done yet."""
    return {"step": 0, "epoch": 0, "elapsed_s": 0.0, "done": False, "train": asdict(cfg), "history": []}


def resume(state: dict, blob: dict, what: str, path: Path) -> None:
    """Carry a checkpoint's steps, epochs, time and history into `state`, and say so."""
    state.update({k: blob[k] for k in RESUMED})
    log.info("resuming %s from %s: step %d, %.1f min done", what, path, state["step"], state["elapsed_s"] / 60)


def batches(n: int, batch: int, rng: np.random.Generator):
    """Index arrays of one shuffled epoch (the last short batch dropped; one batch if n < batch)."""
    order = rng.permutation(n)
    for i in range(0, n - batch + 1 if n >= batch else 1, batch):
        yield order[i : i + batch]


def progress(state: dict, limits: Limits, batches_per_epoch: int, batch_in_epoch: int = 0) -> float:
    """The fraction of the budget done, in [0, 1]: the largest of time, steps and epochs."""
    done = state["elapsed_s"] / limits.seconds
    if limits.steps:
        done = max(done, state["step"] / limits.steps)
    if limits.epochs:
        done = max(done, (state["epoch"] + batch_in_epoch / batches_per_epoch) / limits.epochs)
    return min(done, 1.0)


def run(
    state: dict,
    n: int,
    batch: int,
    limits: Limits,
    step: Callable[[np.ndarray, float], dict[str, float]],
    save: Callable[[], None],
    *,
    desc: str,
    rng: np.random.Generator,
    save_every_s: float = 60.0,
    history: Path | None = None,
) -> None:
    """Call step(batch indices, fraction done) -> losses until a limit is reached.

    state holds step, epoch, elapsed_s and history (per epoch: the mean of each loss and the images
    per second of its steps); it is updated in place, marked done and saved at the end. With
    `history`, that list is also written there as JSON lines after every epoch, for plotting.
    """
    per_epoch = max(n // batch, 1)
    bar = tqdm(
        total=100,
        initial=round(100 * progress(state, limits, per_epoch)),
        desc=desc,
        bar_format="{desc}: {percentage:3.0f}%|{bar}|",
    )
    last_save = time.monotonic()
    while progress(state, limits, per_epoch) < 1.0:
        losses: list[dict[str, float]] = []
        images, seconds = 0, 0.0
        for i, idx in enumerate(batches(n, batch, rng)):
            t0 = time.monotonic()
            losses.append(step(idx, progress(state, limits, per_epoch, i)))
            seconds += time.monotonic() - t0
            images += len(idx)
            state["elapsed_s"] += time.monotonic() - t0
            state["step"] += 1
            first = next(iter(losses[-1]))
            bar.n = round(100 * progress(state, limits, per_epoch, i + 1))
            bar.set_description_str(
                f"{desc} (step {state['step']}, epoch {state['epoch'] + 1}, "
                f"{state['elapsed_s'] / 60:.1f} min, {first} {np.mean([v[first] for v in losses[-20:]]):.4f})"
            )
            if time.monotonic() - last_save > save_every_s:
                save()
                last_save = time.monotonic()
            if progress(state, limits, per_epoch, i + 1) >= 1.0:
                break
        state["epoch"] += 1  # passes over the data, the last one possibly cut short by the budget
        means = {k: float(np.mean([v[k] for v in losses])) for k in losses[0]}
        state["history"].append(
            {
                "epoch": state["epoch"],
                "step": state["step"],
                "elapsed_s": state["elapsed_s"],
                "images_per_s": images / max(seconds, 1e-9),
                **means,
            }
        )
        if history is not None:
            write_history(history, state["history"])
    bar.close()
    state["done"] = True
    save()

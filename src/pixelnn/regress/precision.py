"""Choose the arithmetic of a training loop for the CPU it runs on, at run time.

bfloat16 autocast halves the work only where the CPU has bf16 instructions (AVX-512 BF16, AMX);
elsewhere oneDNN emulates it and a training step gets many times slower. `auto` therefore tries
bf16 only when PyTorch reports native support, and then keeps it only when a short probe of the
real training step measures it faster. The memory layout (channels_last or not) is chosen by the
same probe: which one is faster depends on the CPU, the precision and the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..errors import ConfigError
from .options import PRECISIONS

BF16_MIN_SPEEDUP = 1.15  # auto keeps bf16 only if the probe measures it at least this much faster


@dataclass(frozen=True)
class Choice:
    precision: str  # fp32 | bf16
    channels_last: bool
    note: str  # why, in words (printed once per run)

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    def autocast(self) -> AbstractContextManager:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def layout(self, t: torch.Tensor) -> torch.Tensor:
        """A 4-d tensor in the chosen memory layout."""
        return t.contiguous(memory_format=self.memory_format)

    def to_dict(self) -> dict:
        return {"precision": self.precision, "channels_last": self.channels_last, "note": self.note}


# Environment that limits this process to AVX2 on a newer CPU (how the benchmarks emulate an AVX2-only
# machine): PyTorch's kernels, oneDNN's, and the compiled loops numba makes (search/cpu_kernels.py).
AVX2_LIMITS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "NUMBA_CPU_NAME": "haswell"}


def native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (honours ONEDNN_MAX_CPU_ISA)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@lru_cache(maxsize=1)
def cpu_summary() -> dict:
    """The CPU that produced a figure: model name, the flags that matter for speed, torch's dispatch level."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    return {
        "model": model,
        "flags": [f for f in wanted if f in flags],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(),
        "threads": torch.get_num_threads(),
    }


def describe_cpu() -> str:
    c = cpu_summary()
    return (
        f"{c['model']} ({', '.join(c['flags']) or 'no AVX2'}; torch {c['torch_capability']}, "
        f"native bf16 {'yes' if c['native_bf16'] else 'no'}, {c['threads']} threads)"
    )


def check(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def choose(precision: str, trial: Callable[[Choice], None], repeats: int = 2) -> Choice:
    """The precision and layout to train with. trial(choice) runs one training step on copies.

    'fp32' and 'bf16' fix the precision and probe only the layout; 'auto' also probes bf16 when the
    CPU has it natively. Each option runs once to warm up, then `repeats` times; the fastest wins.
    """
    check(precision)
    native = native_bf16()
    if precision == "auto":
        precisions = ["fp32", "bf16"] if native else ["fp32"]
    else:
        precisions = [precision]
    timings: dict[tuple[str, bool], float] = {}
    for p in precisions:
        for cl in (False, True):
            option = Choice(p, cl, "")
            trial(option)  # warm-up: oneDNN picks and caches its kernels on first use
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                trial(option)
                best = min(best, time.perf_counter() - t0)
            timings[(p, cl)] = best
    best_of = {p: min((timings[(p, cl)], cl) for cl in (False, True)) for p in precisions}
    pick = precisions[0]
    if precision == "auto" and "bf16" in best_of and best_of["bf16"][0] * BF16_MIN_SPEEDUP <= best_of["fp32"][0]:
        pick = "bf16"
    channels_last = best_of[pick][1]
    probe = ", ".join(f"{p}{'+channels_last' if cl else ''} {t * 1000:.0f} ms" for (p, cl), t in timings.items())
    why = {
        "fp32": "fixed by --precision"
        if precision == "fp32"
        else (
            "bf16 not measurably faster"
            if native
            else "no native bf16 on this CPU (it would be emulated, many times slower)"
        ),
        "bf16": "fixed by --precision" if precision == "bf16" else "native bf16, measured faster",
    }[pick]
    note = f"{pick}{', channels_last' if channels_last else ''} ({why}; one step: {probe})"
    return Choice(pick, channels_last, note)

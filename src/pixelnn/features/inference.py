"""How a backbone runs over many images on the CPU at hand: memory layout and precision, chosen at run time.

Layout: channels_last always. oneDNN runs the VGG-16 taps of 96 x 96 images 1.4x faster from
channels_last input than from NCHW natively and 2x faster limited to AVX2 (2 threads, idle machine;
1.1-1.35x on one thread; docs/benchmarks.md, "Bank build throughput"), and the taps then come out
pixels-last, the layout features/projection.py works in. Images made from (B, S, S, 3) arrays by a
permute are channels_last already; `run_backbone` makes it so for any input. Only the input is
converted: the cached backbone's weights are shared with the query path and stay as they are.

Precision: float32, unless the CPU runs bfloat16 natively (AVX-512 BF16, AMX; see
regress/precision.py) and a short probe of this backbone measures bf16 autocast at least
BF16_MIN_SPEEDUP faster. Where bf16 would be emulated it is many times slower, so it is never tried
there. The probe takes a second or two, so a pass over fewer than PROBE_MIN images does not run it
and stays in float32, unless an earlier pass of this process probed (then its answer holds). The
taps are returned in float32 either way. The 64-d reduced descriptors of CelebA faces made with
bf16 have a mean cosine of 0.999994 (minimum 0.99989) with the float32 ones, and a bank exemplar
given as a query (its descriptors then made in float32) still copies itself at every pixel.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn

from ..regress.precision import BF16_MIN_SPEEDUP, Choice, native_bf16

FP32 = Choice("fp32", True, "fp32, channels_last")
PROBE_MIN = 1000  # images: a shorter pass does not pay for the bf16 probe
PROBE_REPEATS = 2
_PROBED: dict[tuple[nn.Module, int, int], Choice] = {}  # (backbone, size, batch) -> what its probe chose


def run_backbone(backbone: nn.Module, images: torch.Tensor, choice: Choice = FP32) -> list[torch.Tensor]:
    """The backbone's taps of RGB images (B, 3, H, W) in [0, 1], computed as `choice` says, returned in float32."""
    with torch.inference_mode(), choice.autocast():
        taps = backbone(choice.layout(images))
    return [t.float() for t in taps]


def pass_arithmetic(backbone: nn.Module, size: int, batch: int, n_images: int) -> Choice:
    """The layout and precision for a pass of `n_images` images of size x size in batches of `batch`.

    The probe runs once per backbone, size and batch in a process, and its answer holds for every later
    pass, short ones included: a bank added to in chunks is computed one way throughout.
    """
    if not native_bf16():
        return Choice("fp32", True, "fp32, channels_last (no native bf16 on this CPU)")
    key = (backbone, size, batch)
    if key not in _PROBED:
        if n_images < PROBE_MIN:
            return Choice("fp32", True, f"fp32, channels_last (bf16 not probed for {n_images} < {PROBE_MIN} images)")
        _PROBED[key] = probe(backbone, size, batch)
    return _PROBED[key]


def probe(backbone: nn.Module, size: int, batch: int) -> Choice:
    """fp32 or bf16 (both channels_last), timed on random images: bf16 only if BF16_MIN_SPEEDUP faster."""
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    best = {}
    for precision in ("fp32", "bf16"):
        option = Choice(precision, True, "")
        run_backbone(backbone, images, option)  # warm-up: oneDNN picks and caches its kernels on first use
        times = []
        for _ in range(PROBE_REPEATS):
            t0 = time.perf_counter()
            run_backbone(backbone, images, option)
            times.append(time.perf_counter() - t0)
        best[precision] = min(times) / batch
    pick = "bf16" if best["bf16"] * BF16_MIN_SPEEDUP <= best["fp32"] else "fp32"
    timing = f"fp32 {best['fp32'] * 1000:.1f}, bf16 {best['bf16'] * 1000:.1f} ms per image"
    why = "native bf16, measured faster" if pick == "bf16" else "bf16 not measurably faster"
    return Choice(pick, True, f"{pick}, channels_last ({why}; probe: {timing})")

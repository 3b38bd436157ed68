"""Resident memory that opening a bank costs: VmRSS before and after `Bank.open`, in a fresh process.

    python benchmarks/bank_open_memory.py results/paper_tables/faces-lowres/pixelnn/bank

Prints one line and a last JSON line. Run it in a process of its own: what earlier work mapped stays counted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pixelnn.bank.bank import Bank
from pixelnn.regress.precision import describe_cpu


def vm_rss_mb() -> float:
    """This process's resident set (anonymous and file-backed pages) in MB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line in /proc/self/status (this benchmark needs Linux)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bank", type=Path, help="a bank folder (MODEL/bank)")
    args = p.parse_args()
    before = vm_rss_mb()
    bank = Bank.open(args.bank)
    after = vm_rss_mb()
    print(
        f"Bank.open of {len(bank)} exemplars: VmRSS {before:.0f} -> {after:.0f} MB (+{after - before:.0f}); "
        f"CPU: {describe_cpu()}"
    )
    print(json.dumps({"exemplars": len(bank), "rss_before_mb": before, "rss_after_mb": after}))


if __name__ == "__main__":
    main()

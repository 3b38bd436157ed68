"""Ruff's lint rules (configured in pyproject.toml's [tool.ruff]) hold over the library, the tests and the benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["src", "tests", "benchmarks"]


def ruff_executable() -> str | None:
    """The ruff next to this interpreter (a virtual environment's bin/), else the one on PATH, else None."""
    beside = Path(sys.executable).with_name("ruff")
    if beside.is_file():
        return str(beside)
    return shutil.which("ruff")


def test_ruff_check_finds_nothing():
    ruff = ruff_executable()
    if ruff is None:
        pytest.skip("ruff is not installed: `pip install ruff` in the virtual environment to run the lint check")
    done = subprocess.run(
        [ruff, "check", "--no-cache", "--output-format", "concise", *CHECKED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        pytest.fail(
            f"`ruff check {' '.join(CHECKED)}` found problems (`ruff check --fix` mends some):\n"
            f"{done.stdout}{done.stderr}",
            pytrace=False,
        )

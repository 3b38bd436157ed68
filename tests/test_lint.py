"""Ruff (configured in pyproject.toml's [tool.ruff]) holds over the library, the tests and the benchmarks:
its lint rules find nothing and `ruff format` would change nothing.

ruff is pinned in requirements-test.lock, so a missing ruff fails these tests rather than skipping them.
"""

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


def run_ruff(*args: str) -> subprocess.CompletedProcess:
    """Run `ruff ARGS src tests benchmarks` from the repository root; fails the test if ruff is not installed."""
    ruff = ruff_executable()
    if ruff is None:
        pytest.fail(
            "ruff is not installed (it is pinned in requirements-test.lock): install the test tools: make setup-test",
            pytrace=False,
        )
    return subprocess.run(
        [ruff, *args, *CHECKED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ruff_check_finds_nothing():
    done = run_ruff("check", "--no-cache", "--output-format", "concise")
    if done.returncode != 0:
        pytest.fail(
            f"`ruff check {' '.join(CHECKED)}` found problems (`ruff check --fix` mends some):\n"
            f"{done.stdout}{done.stderr}",
            pytrace=False,
        )


def test_ruff_format_changes_nothing():
    done = run_ruff("format", "--check", "--no-cache")
    if done.returncode != 0:
        pytest.fail(
            f"`ruff format --check {' '.join(CHECKED)}` would reformat files (`ruff format {' '.join(CHECKED)}` "
            f"does it):\n{done.stdout}{done.stderr}",
            pytrace=False,
        )

"""The library logs and never prints; the command line shows its messages (logs.console)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

from pixelnn.logs import ROOT, console

SRC = Path(__file__).resolve().parents[1] / "src" / "pixelnn"
# Files that still print, edited on other branches at the time logging came in; empty this list once they log.
STILL_PRINTING: set[str] = set()


def _printing_calls(path: Path) -> list[int]:
    """Lines of `path` that call print(...) or something.write(...) named tqdm.write."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id == "print":
            lines.append(node.lineno)
        elif (
            isinstance(f, ast.Attribute)
            and f.attr == "write"
            and isinstance(f.value, ast.Name)
            and f.value.id == "tqdm"
        ):
            lines.append(node.lineno)
    return lines


def test_library_modules_log_instead_of_printing():
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name in STILL_PRINTING:
            continue
        lines = _printing_calls(path)
        if lines:
            found[name] = lines
    # cli.py prints its own one-line error reports; everything else goes through logging
    assert set(found) <= {"cli.py"}, f"use logging.getLogger(__name__) instead of print: {found}"


def test_console_sends_info_to_stdout_and_warnings_to_stderr_then_puts_everything_back(capsys):
    logger = logging.getLogger(ROOT)
    before = logger.level, logger.propagate, list(logger.handlers)
    child = logging.getLogger("pixelnn.bank.build")
    with console(logging.INFO):
        child.info("bank: %d exemplars", 3)
        child.debug("not shown")
        child.warning("disk almost full")
    out, err = capsys.readouterr()
    assert out == "bank: 3 exemplars\n"
    assert err == "warning: disk almost full\n"
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_console_at_warning_hides_info(capsys):
    with console(logging.WARNING):
        logging.getLogger("pixelnn.demo").info("[1/4] data")
    assert capsys.readouterr() == ("", "")

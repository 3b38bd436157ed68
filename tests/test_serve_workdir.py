"""`pixelnn serve`'s temporary work folder: a killed server's is removed by the next start, a live
server's never."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixelnn.serve.workdir import LOCK, remove_stale, work_folder

HOLD = (
    "import sys, time; from pixelnn.serve.workdir import work_folder\n"
    "with work_folder(sys.argv[1]) as f:\n    print(f, flush=True); time.sleep(120)"
)


def env_for(tmp: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TMPDIR": str(tmp)}


def start(argv: list[str], tmp: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env_for(tmp)
    )


def first_line(proc: subprocess.Popen, pattern: str, timeout: float = 120) -> re.Match:
    """The first output line of `proc` matching `pattern` (bounded in lines and time)."""
    deadline = time.monotonic() + timeout
    for _ in range(200):
        line = proc.stdout.readline()
        match = re.search(pattern, line)
        if match:
            return match
        assert line and time.monotonic() < deadline, f"no line matching {pattern!r}; exit code {proc.poll()}"
    raise AssertionError(f"no line matching {pattern!r} in 200 lines")


def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout=30)


def serve(run: Path, tmp: Path) -> tuple[subprocess.Popen, Path]:
    proc = start(["-m", "pixelnn.cli", "serve", "--model", str(run), "--port", "0"], tmp)
    try:
        return proc, Path(first_line(proc, r"results in (\S+);").group(1))
    except BaseException:
        stop(proc, signal.SIGKILL)
        raise


def test_the_next_serve_removes_the_folder_of_a_server_killed_with_sigkill(tiny_run, tmp_path):
    first, folder = serve(tiny_run[0], tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith("pixelnn-serve-")
    stop(first, signal.SIGKILL)
    assert folder.is_dir()  # SIGKILL: no clean-up ran
    second, own = serve(tiny_run[0], tmp_path)
    try:
        assert not folder.exists()
        assert own.is_dir() and own != folder
    finally:
        stop(second)  # SIGTERM: the server cleans up after itself
    assert not own.exists()
    assert not list(tmp_path.glob("pixelnn-serve-*"))


def test_a_live_servers_folder_and_foreign_things_are_left_alone(tmp_path):
    holder = start(["-c", HOLD, str(tmp_path)], tmp_path)
    try:
        live = Path(first_line(holder, r"(\S*pixelnn-serve-\S+)", timeout=60).group(1))
        dead = tmp_path / "pixelnn-serve-dead1"  # a lock file nobody holds: its server died
        dead.mkdir()
        (dead / LOCK).touch()
        (dead / "result.png").write_bytes(b"x")
        unlocked = tmp_path / "pixelnn-serve-nolock"  # being made right now, or an older version's
        unlocked.mkdir()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / LOCK).touch()
        (tmp_path / "pixelnn-serve-link").symlink_to(elsewhere)
        (tmp_path / "pixelnn-serve-file").write_text("not a folder")
        removed = remove_stale(tmp_path)
        assert removed == [dead] and not dead.exists()
        assert live.is_dir() and (live / LOCK).exists()
        assert unlocked.is_dir() and (elsewhere / LOCK).exists() and (tmp_path / "pixelnn-serve-file").exists()
        assert remove_stale(tmp_path) == []
    finally:
        stop(holder, signal.SIGKILL)
    assert remove_stale(tmp_path) == [live]  # its owner is gone now


def test_work_folder_is_removed_on_exit_even_after_an_error(tmp_path):
    with pytest.raises(KeyError):
        with work_folder(tmp_path) as folder:
            assert (folder / LOCK).exists()
            raise KeyError("boom")
    assert not folder.exists()


def test_serve_on_a_port_in_use_is_a_clean_error_and_leaves_no_folder(tiny_run, tmp_path):
    """Found while probing the CLI: a port in use (or an unknown --host) ended in a traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "pixelnn.cli", "serve", "--model", str(tiny_run[0]), "--port", str(port)],
            capture_output=True,
            text=True,
            env=env_for(tmp_path),
            timeout=120,
        )
    assert done.returncode == 2, done.stderr
    assert f"pixelnn serve: error: cannot listen on 127.0.0.1 port {port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.glob("pixelnn-serve-*"))

"""Several `index` runs on one bank: real processes, a writers' lock, and what crashed writers leave."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import smooth_textures
from pixelnn.bank.bank import Bank
from pixelnn.data.signals import lowres
from pixelnn.synth.pipeline import PixelNN
from pixelnn.workflow import index_arrays

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SRC = Path(os.environ.get("PIXELNN_TEST_SRC", Path(__file__).resolve().parents[1] / "src"))
TESTS = Path(__file__).resolve().parent

# A writer process: makes its own exemplars (seed k), waits for the `go` file so that all writers
# read the manifest at about the same time, then indexes them. With `pause`, it stops for good once
# its shard is staged, just before the commit, after creating the file `pause`; with pause "ticks",
# it prints "tick" before each file operation of the bank writer and waits a little, so that a test
# can kill it at a chosen one.
WRITER = """
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from conftest import smooth_textures
from pixelnn.bank import store
from pixelnn.data.signals import lowres
from pixelnn.workflow import index_arrays

run, bank, k, n, go, descriptors, pause = sys.argv[1:8]
k, n, descriptors = int(k), int(n), int(descriptors) or None
y = smooth_textures(n, 32, seed=100 + k)
x = lowres(y, 4)
def ticking(real):
    def op(*args, **kwargs):
        print("tick", flush=True)
        time.sleep(0.03)
        return real(*args, **kwargs)
    return op
if pause == "ticks":
    for name in ("replace_durably", "write_json", "remove_leftovers", "stage_shard"):
        setattr(store, name, ticking(getattr(store, name)))
    store.np.save = ticking(store.np.save)
elif pause != "-":
    def stop(*args, **kwargs):
        Path(pause).touch()
        time.sleep(3600)
    store.commit_staged = stop
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.005)
m = index_arrays(run, x, y, [f"w{k}/{i}.png" for i in range(n)], [f"w{k}"] * n, \
bank=bank, descriptors=descriptors, progress=False)
print(json.dumps({"count": m["count"]}), flush=True)
"""


def writer_data(k: int, n: int):
    y = smooth_textures(n, 32, seed=100 + k)
    return lowres(y, 4), y


def start_writer(run, bank, k, n, go, descriptors=0, pause="-"):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    args = [sys.executable, "-c", WRITER, str(run), str(bank), str(k), str(n), str(go), str(descriptors), str(pause)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def run_writers(run, bank, sizes, tmp_path, descriptors=0, seeds=None):
    go = tmp_path / "go"
    procs = [start_writer(run, bank, k, n, go, descriptors) for k, n in zip(seeds or range(len(sizes)), sizes)]
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    return [json.loads(out.strip().splitlines()[-1])["count"] for out, _ in outs]


def check_every_writer_present(bank: Path, sizes, first: int = 0):
    """Every exemplar of every writer is in the bank once, with its name, label and content."""
    opened = Bank.open(bank)
    assert len(opened) == first + sum(sizes) == opened.manifest["count"] == opened.index.ntotal
    for k, n in enumerate(sizes):
        ids = [opened.names.index(f"w{k}/{i}.png") for i in range(n)]
        assert [opened.labels[i] for i in ids] == [f"w{k}"] * n
        x, y = writer_data(k, n)
        assert np.array_equal(opened.gather("y", ids), y)
        assert np.array_equal(opened.gather("x", ids), x)
    assert len(set(opened.names)) == len(opened.names)
    assert len({s["name"] for s in opened.manifest["shards"]}) == len(opened.manifest["shards"])
    return opened


def leftovers(bank: Path):
    return sorted(p.name for p in bank.iterdir() if p.name.startswith("."))


def test_two_concurrent_writers_on_an_existing_bank_lose_nothing(tiny_run, tmp_path):
    run = tiny_run[0]
    bank = shutil.copytree(run / "bank", tmp_path / "bank")
    counts = run_writers(run, bank, [3, 5], tmp_path)
    assert sorted(counts) == [6 + 3, 6 + 3 + 5] or sorted(counts) == [6 + 5, 6 + 3 + 5]
    opened = check_every_writer_present(bank, [3, 5], first=6)
    assert opened.names[:6] == [f"im{i}.png" for i in range(6)]  # the old ids keep their exemplars
    assert leftovers(bank) == []


def test_four_concurrent_writers_create_one_bank_with_descriptors(tiny_run, tmp_path):
    run = tiny_run[0]
    bank = tmp_path / "new" / "bank"
    sizes = [2, 3, 2, 4]
    counts = run_writers(run, bank, sizes, tmp_path, descriptors=8)
    assert max(counts) == sum(sizes) and len(set(counts)) == 4  # each saw the bank as it made it
    opened = check_every_writer_present(bank, sizes)
    setting = opened.manifest["descriptors"]
    assert (setting["dim"], setting["dtype"]) == (8, "pq")
    assert all(s["desc"] for s in opened.manifest["shards"])
    assert leftovers(bank) == []
    # every writer's descriptors were made with the one projection and codec the bank kept: the fast search
    # copies each exemplar from itself
    model = PixelNN.load(run, bank=bank)
    for k, n in enumerate(sizes):
        x, y = writer_data(k, n)
        cand = model.synthesize(x[0], grid="1:1:whole").candidates[0]
        assert (cand.corr.exemplar == opened.names.index(f"w{k}/0.png")).all()
        assert np.array_equal(cand.image, y[0].astype(np.float32) / 255.0)


def test_concurrent_writers_of_the_same_images_add_them_once(tiny_run, tmp_path):
    run = tiny_run[0]
    bank = shutil.copytree(run / "bank", tmp_path / "bank")
    counts = run_writers(run, bank, [3, 3, 3], tmp_path, seeds=[0, 0, 0])  # the same 3 images, 3 times
    assert counts == [9, 9, 9]
    check_every_writer_present(bank, [3], first=6)
    assert len(Bank.open(bank).manifest["shards"]) == 2
    assert leftovers(bank) == []


def _make_leftovers_by_hand(bank: Path) -> list[str]:
    (bank / ".shard-007.abc123").mkdir()  # an older version's shard temporary
    (bank / ".shard-007.abc123" / "f.npy").write_bytes(b"x" * 1000)
    (bank / ".bank.json.q1w2e3.tmp").write_text("{half")
    (bank / ".projection.npy.zz.tmp").write_bytes(b"half")
    (bank / ".staging-noowner").mkdir()  # no owner.lock: made by an older version
    (bank / ".staging-noowner" / "desc.npy").write_bytes(b"d" * 1000)
    (bank / "shard-009").mkdir()  # renamed into place, never listed in the manifest
    (bank / "shard-009" / "y.npy").write_bytes(b"junk")
    return [".bank.json.q1w2e3.tmp", ".projection.npy.zz.tmp", ".shard-007.abc123", ".staging-noowner", "shard-009"]


def _wait_for(path: Path, proc, seconds: float = 120) -> None:
    end = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.02)


def test_the_next_writer_removes_dead_writers_leftovers_but_not_a_live_writers(tiny_run, tmp_path):
    run = tiny_run[0]
    bank = shutil.copytree(run / "bank", tmp_path / "bank")
    go = tmp_path / "go"
    go.touch()
    # a writer killed with SIGKILL once its shard is staged, and a live one paused at the same point
    dead = start_writer(run, bank, 1, 3, go, pause=tmp_path / "dead-staged")
    _wait_for(tmp_path / "dead-staged", dead)
    dead_staging = [p.name for p in bank.glob(".staging-*")]
    assert len(dead_staging) == 1 and (bank / dead_staging[0] / "shard" / "y.npy").exists()
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    live = start_writer(run, bank, 2, 2, go, pause=tmp_path / "live-staged")
    try:
        _wait_for(tmp_path / "live-staged", live)
        live_staging = sorted({p.name for p in bank.glob(".staging-*")} - set(dead_staging))
        assert len(live_staging) == 1
        by_hand = _make_leftovers_by_hand(bank)
        assert len(Bank.open(bank)) == 6  # leftovers do not disturb readers

        x, y = writer_data(3, 2)
        m = index_arrays(run, x, y, ["w3/0.png", "w3/1.png"], ["w3", "w3"], bank=bank, progress=False)
        names = {p.name for p in bank.iterdir()}
        assert not names & set(by_hand + dead_staging)
        assert leftovers(bank) == live_staging  # the live writer's work is kept
        assert (bank / live_staging[0] / "shard" / "y.npy").exists()
        assert m["count"] == 8 and [s["name"] for s in m["shards"]] == ["shard-000", "shard-001"]
        opened = Bank.open(bank)
        assert opened.names[6:] == ["w3/0.png", "w3/1.png"] and np.array_equal(opened.gather("y", [6, 7]), y)
    finally:
        live.kill()
        live.wait()


def _kill_at_tick(proc, tick: int) -> bool:
    """Kill the writer when it announces file operation number `tick`; False if it finished first."""
    seen = 0
    for line in proc.stdout:
        if line.strip() == "tick":
            seen += 1
            if seen == tick:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
    proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    return False


def test_random_kills_of_index_runs_never_break_the_bank(tiny_run, tmp_path):
    run = tiny_run[0]
    bank = shutil.copytree(run / "bank", tmp_path / "bank")
    rng = random.Random(12)
    go = tmp_path / "go"
    go.touch()
    committed, left_behind = [], set()
    for k in range(10, 16):  # a run does about 10 file operations: kill it at a random one
        killed = _kill_at_tick(start_writer(run, bank, k, 3, go, pause="ticks"), rng.randint(1, 11))
        opened = Bank.open(bank)  # loads after every kill
        if f"w{k}/0.png" in opened.names:
            committed.append(k)
        assert killed or committed[-1:] == [k]
        assert len(opened) == opened.manifest["count"] == 6 + 3 * len(committed)
        left_behind |= {p.name for p in bank.iterdir()} - {
            "bank.json",
            "bank.lock",
            *(s["name"] for s in opened.manifest["shards"]),
        }
    assert left_behind  # some kills did leave work behind
    x, y = writer_data(99, 2)
    index_arrays(run, x, y, ["w99/0.png", "w99/1.png"], ["w99"] * 2, bank=bank, progress=False)
    opened = Bank.open(bank)
    assert {p.name for p in bank.iterdir()} == {
        "bank.json",
        "bank.lock",
        *(s["name"] for s in opened.manifest["shards"]),
    }
    assert len(opened) == 6 + 3 * len(committed) + 2
    for k in committed:
        ids = [opened.names.index(f"w{k}/{i}.png") for i in range(3)]
        assert np.array_equal(opened.gather("y", ids), writer_data(k, 3)[1])


def test_rebuilding_a_bank_swaps_it_in_durably(tiny_run, tmp_path, monkeypatch):
    from pixelnn import commands, model_folder
    from pixelnn.data.prepare import Prepared

    _, x, y, labels = tiny_run
    run = shutil.copytree(tiny_run[0], tmp_path / "run")
    synced = []
    monkeypatch.setattr(
        model_folder, "fsync_path", lambda p: synced.append((Path(p), (Path(p) / "bank" / "bank.json").exists()))
    )
    commands.rebuild_bank(run, Prepared(x[:4], y[:4], [f"r{i}" for i in range(4)], labels[:4], "lowres"))
    assert synced == [(run, True)]  # the run folder, once the new bank is in place
    assert Bank.open(run / "bank").names == ["r0", "r1", "r2", "r3"]
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".bank")) == []

"""Damaged model folders and banks are refused when loaded, with a typed error naming the file
and the problem: never a traceback, never a wrong answer (issue 12, item 4)."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

from pixelnn.bank import store
from pixelnn.bank.bank import Bank
from pixelnn.cli import main
from pixelnn.errors import BankError, ConfigError
from pixelnn.regress import checkpoint
from pixelnn.synth.pipeline import PixelNN
from pixelnn.workflow import index_arrays

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIM = 16  # reduced descriptors of the fast bank


@pytest.fixture(scope="module")
def runs(tiny_run, tmp_path_factory):
    """Model folders of the tiny model: 'exact' (tiny_run's bank), 'fast' (a bank with DIM-dim coded
    descriptors) and 'fast1' (a version-1 bank with DIM-dim float16 descriptors)."""
    run, x, y, labels = tiny_run
    base = tmp_path_factory.mktemp("corrupt")
    out = {"exact": shutil.copytree(run, base / "exact")}
    for kind, version in (("fast", 2), ("fast1", 1)):
        out[kind] = base / kind
        out[kind].mkdir()
        for name in ("config.json", checkpoint.FILENAME):
            shutil.copy(run / name, out[kind] / name)
        names = [f"im{i}.png" for i in range(6)]
        index_arrays(out[kind], x, y, names, labels, descriptors=DIM, progress=False, version=version)
    return out


@pytest.fixture
def copy_of(runs, tmp_path):
    """A writable copy of one of the model folders."""
    return lambda kind: shutil.copytree(runs[kind], tmp_path / kind)


# --- ways to damage a file ----------------------------------------------------------------------


def truncate(path, keep=0.5):
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def edit_json(path, change):
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def edit_array(path, change):
    np.save(path, change(np.load(path)))


def manifest(change):
    return lambda run: edit_json(run / "bank" / "bank.json", change)


def array(name, change, shard="shard-000"):
    return lambda run: edit_array(run / "bank" / shard / name, change)


def random_bytes_not_npy(run):
    path = run / "bank" / "shard-000" / "y.npy"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, path.stat().st_size, dtype=np.uint8).tobytes())


def random_data_after_a_valid_header(run, extra=1000):
    """y.npy keeps its header but its data is random and longer than the header says."""
    path = run / "bank" / "shard-000" / "y.npy"
    header = path.read_bytes()[:128]
    size = path.stat().st_size - 128 + extra
    path.write_bytes(header + np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes())


def header_only(run):
    path = run / "bank" / "shard-000" / "y.npy"
    path.write_bytes(path.read_bytes()[:128])


def with_nan(value):
    def change(g):
        g = g.copy()
        g[2, 0] = value
        return g

    return change


def delete(key):
    return lambda m: m.pop(key)


def set_key(key, value):
    return lambda m: m.__setitem__(key, value)


def set_shard(key, value):
    return lambda m: m["shards"][0].__setitem__(key, value)


def stage1_of_another_width(run):
    blob = checkpoint.read(run / checkpoint.FILENAME)
    blob["config"]["width"] = 4
    checkpoint.write_checkpoint(run / checkpoint.FILENAME, blob)


def config_json(change):
    return lambda run: edit_json(run / "config.json", change)


# (id, bank kind, damage, error type, file the message names, pattern of the problem)
CASES = [
    (
        "config-truncated",
        "exact",
        lambda r: truncate(r / "config.json"),
        ConfigError,
        "config.json",
        "not a readable model configuration",
    ),
    (
        "config-empty",
        "exact",
        lambda r: (r / "config.json").write_text(""),
        ConfigError,
        "config.json",
        "not a readable",
    ),
    ("config-no-signal", "exact", config_json(delete("signal")), ConfigError, "config.json", "lacks the key 'signal'"),
    (
        "config-signal-number",
        "exact",
        config_json(set_key("signal", 3)),
        ConfigError,
        "config.json",
        "signal must be a str",
    ),
    (
        "config-factor-text",
        "exact",
        config_json(set_key("factor", "4")),
        ConfigError,
        "config.json",
        "factor must be a int",
    ),
    (
        "config-a-list",
        "exact",
        lambda r: (r / "config.json").write_text("[1, 2]"),
        ConfigError,
        "config.json",
        "not an object",
    ),
    (
        "stage1-truncated",
        "exact",
        lambda r: truncate(r / checkpoint.FILENAME),
        ConfigError,
        "stage1.safetensors",
        "not a readable stage-1 checkpoint",
    ),
    (
        "stage1-config-mismatch",
        "exact",
        stage1_of_another_width,
        ConfigError,
        "stage1.safetensors",
        "weights do not fit",
    ),
    (
        "bank-json-truncated",
        "exact",
        lambda r: truncate(r / "bank" / "bank.json"),
        BankError,
        "bank.json",
        "not a readable bank manifest",
    ),
    (
        "bank-json-empty",
        "exact",
        lambda r: (r / "bank" / "bank.json").write_text(""),
        BankError,
        "bank.json",
        "not a readable",
    ),
    ("bank-json-no-size", "exact", manifest(delete("size")), BankError, "bank.json", "lacks the key 'size'"),
    (
        "bank-json-no-global_dim",
        "exact",
        manifest(delete("global_dim")),
        BankError,
        "bank.json",
        "lacks the key 'global_dim'",
    ),
    ("bank-json-no-shards", "exact", manifest(delete("shards")), BankError, "bank.json", "lacks the key 'shards'"),
    (
        "bank-json-no-input_shape",
        "exact",
        manifest(delete("input_shape")),
        BankError,
        "bank.json",
        "lacks the key 'input_shape'",
    ),
    (
        "bank-json-size-text",
        "exact",
        manifest(set_key("size", "32")),
        BankError,
        "bank.json",
        "size must be a non-negative integer",
    ),
    (
        "bank-json-input_shape-2d",
        "exact",
        manifest(set_key("input_shape", [8, 8])),
        BankError,
        "bank.json",
        "input_shape must be 3",
    ),
    (
        "bank-json-shards-dict",
        "exact",
        manifest(set_key("shards", {})),
        BankError,
        "bank.json",
        "shards must be a list",
    ),
    (
        "bank-json-backbone-unknown",
        "exact",
        manifest(set_key("backbone", "resnet9000")),
        BankError,
        "bank.json",
        "unknown backbone 'resnet9000'",
    ),
    (
        "bank-json-shard-twice",
        "exact",
        manifest(lambda m: m.update(shards=m["shards"] * 2, count=12)),
        BankError,
        "bank.json",
        "lists a shard twice",
    ),
    (
        "bank-json-count",
        "exact",
        manifest(set_key("count", 60)),
        BankError,
        "bank.json",
        "count is 60, its shards hold 6",
    ),
    (
        "bank-json-shard-count-text",
        "exact",
        manifest(set_shard("count", "6")),
        BankError,
        "bank.json",
        "count must be a non-negative integer",
    ),
    (
        "shard-path-absolute",
        "exact",
        manifest(set_shard("name", "/etc")),
        BankError,
        "bank.json",
        "'/etc' is not a plain folder name",
    ),
    (
        "shard-path-dotdot",
        "exact",
        manifest(set_shard("name", "..")),
        BankError,
        "bank.json",
        "not a plain folder name",
    ),
    (
        "shard-path-escapes",
        "exact",
        manifest(set_shard("name", "../../exact/bank/shard-000")),
        BankError,
        "bank.json",
        "not a plain folder name",
    ),
    (
        "f-wrong-size",
        "exact",
        array("f.npy", lambda a: a[:, :16, :16]),
        BankError,
        "f.npy",
        r"shape \(6, 16, 16, 3\).*\(6, 32, 32, 3\)",
    ),
    (
        "f-wrong-dtype",
        "exact",
        array("f.npy", lambda a: a.astype(np.float32)),
        BankError,
        "f.npy",
        "float32 data, the bank stores uint8",
    ),
    (
        "f-wrong-dtype-v1",
        "fast1",
        array("f.npy", lambda a: a.astype(np.float32)),
        BankError,
        "f.npy",
        "float32 data, the bank stores float16",
    ),
    ("x-wrong-shape", "exact", array("x.npy", lambda a: a[..., :1]), BankError, "x.npy", r"shape \(6, 8, 8, 1\)"),
    (
        "y-wrong-dtype",
        "exact",
        array("y.npy", lambda a: a.astype(np.float32)),
        BankError,
        "y.npy",
        "float32 data, the bank stores uint8",
    ),
    (
        "y-fewer-rows",
        "exact",
        array("y.npy", lambda a: a[:4]),
        BankError,
        "y.npy",
        "y.npy holds 4 rows, but its manifest says 6",
    ),
    ("global-wrong-width", "exact", array("global.npy", lambda a: a[:, :-1]), BankError, "global.npy", "shape"),
    ("global-1d", "exact", array("global.npy", lambda a: a[:, 0]), BankError, "global.npy", "shape"),
    (
        "global-nan",
        "exact",
        array("global.npy", with_nan(np.nan)),
        BankError,
        "global.npy",
        r"NaN or infinite values in 1 row\(s\) \(first: 2\)",
    ),
    ("global-inf", "exact", array("global.npy", with_nan(np.inf)), BankError, "global.npy", "NaN or infinite"),
    ("y-random-bytes", "exact", random_bytes_not_npy, BankError, "y.npy", "missing or corrupt"),
    (
        "y-random-data-too-long",
        "exact",
        random_data_after_a_valid_header,
        BankError,
        "y.npy",
        "its header says .* the file has",
    ),
    ("y-header-only", "exact", header_only, BankError, "y.npy", "missing or corrupt"),
    (
        "y-deleted",
        "exact",
        lambda r: (r / "bank" / "shard-000" / "y.npy").unlink(),
        BankError,
        "y.npy",
        "missing or corrupt",
    ),
    (
        "meta-names-short",
        "exact",
        lambda r: edit_json(r / "bank" / "shard-000" / "meta.json", lambda m: m["names"].pop()),
        BankError,
        "meta.json",
        "meta.json names holds 5 rows",
    ),
    (
        "meta-label-number",
        "exact",
        lambda r: edit_json(r / "bank" / "shard-000" / "meta.json", lambda m: m["labels"].__setitem__(0, 7)),
        BankError,
        "meta.json",
        "labels must be a list of strings or nulls",
    ),
    (
        "meta-not-json",
        "exact",
        lambda r: truncate(r / "bank" / "shard-000" / "meta.json"),
        BankError,
        "meta.json",
        "missing or corrupt",
    ),
    (
        "desc-wrong-dim",
        "fast1",
        array("desc.npy", lambda a: a[..., :8]),
        BankError,
        "desc.npy",
        r"shape \(6, 32, 32, 8\)",
    ),
    (
        "desc-deleted",
        "fast",
        lambda r: (r / "bank" / "shard-000" / "desc.npy").unlink(),
        BankError,
        "desc.npy",
        "missing or corrupt",
    ),
    (
        "descriptors-dim-wrong",
        "fast1",
        manifest(set_key("descriptors", {"dim": 8, "dtype": "float16"})),
        BankError,
        "desc.npy",
        r"asks for \(6, 32, 32, 8\)",
    ),
    (
        "descriptors-dim-text",
        "fast",
        manifest(set_key("descriptors", {"dim": "16"})),
        BankError,
        "bank.json",
        "descriptors must be null",
    ),
    ("descriptors-dropped", "fast", manifest(set_key("descriptors", None)), BankError, "bank.json", "desc flag"),
    (
        "projection-rows",
        "fast1",
        lambda r: edit_array(r / "bank" / "projection.npy", lambda p: p[:8]),
        BankError,
        "projection.npy",
        "projects to 8 dimensions, but bank.json says descriptors.dim is 16",
    ),
    (
        "projection-columns",
        "fast1",
        lambda r: edit_array(r / "bank" / "projection.npy", lambda p: p[:, :-5]),
        BankError,
        "projection.npy",
        "backbone makes",
    ),
    (
        "projection-truncated",
        "fast1",
        lambda r: truncate(r / "bank" / "projection.npy"),
        BankError,
        "projection.npy",
        "missing or corrupt",
    ),
    (
        "projection-nan",
        "fast1",
        lambda r: edit_array(r / "bank" / "projection.npy", with_nan(np.nan)),
        BankError,
        "projection.npy",
        "NaN or infinite",
    ),
    # version 2: codes, codebooks, and the sha256 of the projection and codebooks in bank.json
    ("codes-short", "fast", array("desc.npy", lambda a: a[:, :-16]), BankError, "desc.npy", r"asks for \(6, 6144\)"),
    (
        "codes-wrong-dtype",
        "fast",
        array("desc.npy", lambda a: a.astype(np.int16)),
        BankError,
        "desc.npy",
        "int16 data, the bank stores uint8",
    ),
    (
        "projection-rows-v2",
        "fast",
        lambda r: edit_array(r / "bank" / "projection.npy", lambda p: p[:8]),
        BankError,
        "projection.npy",
        "projects to 8 dimensions",
    ),
    (
        "projection-changed-v2",
        "fast",
        lambda r: edit_array(r / "bank" / "projection.npy", lambda p: p[::-1].copy()),
        BankError,
        "projection.npy",
        "sha256 differs from the one bank.json recorded",
    ),
    (
        "codebook-truncated",
        "fast",
        lambda r: truncate(r / "bank" / "codebook-0.npy"),
        BankError,
        "codebook-0.npy",
        "missing or corrupt",
    ),
    (
        "codebook-deleted",
        "fast",
        lambda r: (r / "bank" / "codebook-2.npy").unlink(),
        BankError,
        "codebook-2.npy",
        "missing or corrupt",
    ),
    (
        "codebook-wrong-shape",
        "fast",
        lambda r: edit_array(r / "bank" / "codebook-2.npy", lambda c: c[:, :128]),
        BankError,
        "codebook-2.npy",
        r"not float32 \(1, 256, 16\)",
    ),
    (
        "codebook-float64",
        "fast",
        lambda r: edit_array(r / "bank" / "codebook-0.npy", lambda c: c.astype(np.float64)),
        BankError,
        "codebook-0.npy",
        "holds float64",
    ),
    (
        "codebook-nan",
        "fast",
        lambda r: edit_array(r / "bank" / "codebook-1.npy", with_nan(np.nan)),
        BankError,
        "codebook-1.npy",
        "NaN or infinite",
    ),
    (
        "codebook-one-value-changed",
        "fast",
        lambda r: edit_array(
            r / "bank" / "codebook-2.npy", lambda c: c + np.eye(1, c.size, dtype=c.dtype).reshape(c.shape)
        ),
        BankError,
        "codebook-2.npy",
        "sha256 differs",
    ),
    (
        "descriptors-no-sums",
        "fast",
        manifest(lambda m: m["descriptors"].pop("sha256")),
        BankError,
        "bank.json",
        "must record the sha256",
    ),
    (
        "descriptors-bytes-not-dividing",
        "fast",
        manifest(lambda m: m["descriptors"]["levels"][1].__setitem__(1, 3)),
        BankError,
        "bank.json",
        "a level's 3 bytes do not divide dim 16",
    ),
    (
        "descriptors-dtype-float16-in-v2",
        "fast",
        manifest(lambda m: m["descriptors"].__setitem__("dtype", "float16")),
        BankError,
        "bank.json",
        "must name dtype 'pq'",
    ),
]


@pytest.mark.parametrize("kind, damage, error, file, problem", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_damaged_model_folder_is_refused_naming_the_file(copy_of, kind, damage, error, file, problem):
    run = copy_of(kind)
    PixelNN.load(run)  # the copy loads before the damage
    damage(run)
    with pytest.raises(error) as err:
        PixelNN.load(run)
    message = str(err.value)
    assert file in message
    assert re.search(problem, message), message


def test_a_length_mismatch_names_the_file_that_differs_not_two_equal_counts(copy_of):
    run = copy_of("exact")
    edit_array(run / "bank" / "shard-000" / "global.npy", lambda g: g[:5])
    with pytest.raises(BankError) as err:
        Bank.open(run / "bank")
    assert "global.npy holds 5 rows, but its manifest says 6 exemplars" in str(err.value)
    assert not re.search(r"holds (\d+) exemplars, its manifest says \1\b", str(err.value))


def test_an_absolute_shard_path_never_reads_outside_the_bank(copy_of, tmp_path):
    run = copy_of("exact")
    elsewhere = shutil.copytree(run / "bank" / "shard-000", tmp_path / "elsewhere")
    edit_json(run / "bank" / "bank.json", set_shard("name", str(elsewhere)))
    with pytest.raises(BankError, match="not a plain folder name"):
        Bank.open(run / "bank")
    with pytest.raises(BankError, match="not a plain folder name"):  # read_shard refuses it on its own too
        store.read_shard(run / "bank", {"name": str(elsewhere), "count": 6})


# --- the CLI: one 'error:' line, exit 2, no traceback ---------------------------------------------

CLI_CASES = [
    "config-truncated",
    "bank-json-no-size",
    "shard-path-absolute",
    "global-nan",
    "y-random-bytes",
    "projection-columns",
]


@pytest.mark.parametrize("case", CLI_CASES)
def test_the_cli_reports_a_damaged_model_without_a_traceback(copy_of, case, capsys, tmp_path):
    _, kind, damage, _, file, _ = next(c for c in CASES if c[0] == case)
    run = copy_of(kind)
    damage(run)
    capsys.readouterr()
    assert main(["synthesize", "--model", str(run), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixelnn synthesize: error: ") and file in err
    assert "Traceback" not in err


# --- pixelnn verify -------------------------------------------------------------------------------


def flip_a_byte(path, at=-10):
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("kind", ["exact", "fast", "fast1"])
def test_a_new_shard_records_a_sha256_per_array_file(runs, kind):
    shard = runs[kind] / "bank" / "shard-000"
    sums = json.loads((shard / "meta.json").read_text())["sha256"]
    assert sorted(sums) == sorted(p.name for p in shard.glob("*.npy"))
    assert ("desc.npy" in sums) == kind.startswith("fast")
    assert all(sums[name] == store.file_sha256(shard / name) for name in sums)


def test_a_compact_bank_records_the_sha256_of_its_projection_and_codebooks(runs):
    bank = runs["fast"] / "bank"
    sums = store.read_manifest(bank)["descriptors"]["sha256"]
    assert sorted(sums) == ["codebook-0.npy", "codebook-1.npy", "codebook-2.npy", "projection.npy"]
    assert all(sums[name] == store.file_sha256(bank / name) for name in sums)


def test_verify_names_a_changed_codebook(copy_of, capsys):
    run = copy_of("fast")
    flip_a_byte(run / "bank" / "codebook-1.npy", at=-3)  # a float's low mantissa byte: still finite
    problems, _ = store.verify_bank(run / "bank", store.read_manifest(run / "bank"))
    assert len(problems) == 1 and "codebook-1.npy: sha256 is" in problems[0]
    assert main(["verify", "--model", str(run)]) == 2  # opening the bank already checks them
    err = capsys.readouterr().err
    assert "codebook-1.npy is damaged: its sha256 differs" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["exact", "fast", "fast1"])
def test_a_clean_bank_verifies(runs, kind, capsys):
    assert main(["verify", "--model", str(runs[kind])]) == 0
    out = capsys.readouterr().out
    assert "is intact (6 exemplars; 1 shard(s) checked file by file)" in out


def test_verify_names_a_flipped_byte_in_y(copy_of, capsys):
    run = copy_of("exact")
    flip_a_byte(run / "bank" / "shard-000" / "y.npy")
    PixelNN.load(run)  # same size, shape and type: only the content check sees it
    assert main(["verify", "--model", str(run)]) == 2
    err = capsys.readouterr().err
    assert "1 file(s) differ" in err and "shard-000/y.npy: sha256 is" in err
    assert "f.npy" not in err and "Traceback" not in err


def test_verify_names_every_file_that_differs(copy_of):
    run = copy_of("fast")
    for name in ("desc.npy", "global.npy"):
        flip_a_byte(run / "bank" / "shard-000" / name)
    problems, unhashed = store.verify_bank(run / "bank", store.read_manifest(run / "bank"))
    assert [p.split(":")[0].rsplit("/", 1)[1] for p in problems] == ["desc.npy", "global.npy"]
    assert unhashed == []


def test_an_old_bank_without_sums_loads_and_verify_says_it_has_none(copy_of, capsys):
    run = copy_of("exact")
    edit_json(run / "bank" / "shard-000" / "meta.json", lambda m: m.pop("sha256"))
    assert len(PixelNN.load(run).bank) == 6
    assert main(["verify", "--model", str(run)]) == 0
    out = capsys.readouterr().out
    assert "1 shard(s) have no stored sha256 sums" in out and "shard-000" in out
    assert "0 shard(s) checked file by file" in out


def test_sums_stay_right_when_a_writer_drops_rows_it_finds_already_added(copy_of, tiny_run):
    """_drop_rows rewrites the staged arrays: their recorded sums must follow."""
    run = copy_of("exact")
    _, x, y, labels = tiny_run
    before = {s["name"] for s in store.read_manifest(run / "bank")["shards"]}
    with store.staging_folder(run / "bank") as staging:
        shard = store.Shard(
            np.zeros((2, 32, 32, 3), np.uint8),
            y[:2],
            x[:2],
            np.ones((2, 512), np.float16) / 512**0.5,
            ["a", "b"],
            [None, None],
        )
        store.stage_shard(staging / "shard", shard)
        store._drop_rows(staging / "shard", np.array([True, False]))
        sums = json.loads((staging / "shard" / "meta.json").read_text())["sha256"]
        assert sums == store.array_sums(staging / "shard")
        assert np.load(staging / "shard" / "y.npy").shape[0] == 1
    assert {s["name"] for s in store.read_manifest(run / "bank")["shards"]} == before


# --- the pix2pix baseline's folder ----------------------------------------------------------------


@pytest.mark.parametrize(
    "blob, problem",
    [
        ({"config": {"no_such_setting": 1}, "generator": {}}, "weights do not fit its configuration"),
        ({"config": {"size": 32}}, "lacks the generator's configuration or weights"),
    ],
    ids=["config-of-another-kind", "no-weights"],
)
def test_a_damaged_pix2pix_checkpoint_is_refused(tmp_path, blob, problem):
    from pixelnn.baselines.pix2pix import checkpoint as ckpt

    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION, **blob}, tmp_path / ckpt.FILENAME)
    with pytest.raises(ConfigError, match=problem) as err:
        ckpt.load_generator(tmp_path)
    assert ckpt.FILENAME in str(err.value)


@pytest.mark.parametrize("text", ["", '{"pix2pix": ', "[]"], ids=["empty", "truncated", "a-list"])
def test_a_damaged_pix2pix_config_is_refused_before_training(tmp_path, text):
    from conftest import smooth_textures
    from pixelnn.baselines.pix2pix import run as folder
    from pixelnn.baselines.pix2pix import train as training

    y = smooth_textures(2, 32)
    x = y[:, ::4, ::4]
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ConfigError, match="config.json") as err:
        folder.train_run(tmp_path, x, y, {"signal": "lowres"}, training.Pix2PixTrainConfig(steps=1), ngf=4, ndf=4)
    assert "choose another --out folder" in str(err.value)

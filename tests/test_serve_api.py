"""The web app's JSON API through Flask's test client, and the real server (waitress) under load."""

from __future__ import annotations

import http.client
import io
import json
import os
import struct
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from pixelnn.serve import create_app
from pixelnn.serve.uploads import decode_image, pixel_cap
from serve_support import FAST_GRID, decode, photo_folder, png, png_declaring, running, sketch, tiny_app

DOGS = {2, 3, 4}  # 'dog' matches dog and dog/terrier
EVIL = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "/etc/passwd", "....//....//etc/passwd", "..\\..\\etc\\passwd"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def served(model, tiny_run, tmp_path_factory):
    """(app, test client, work folder, validation folder) with a 1 MB upload limit."""
    app, work, val = tiny_app(
        model, tiny_run[2], tmp_path_factory.mktemp("serve"), keep=50, max_upload_mb=1.0, wait_s=0.3
    )
    return app, app.test_client(), work, val


def post(client, filename: str = "upload.png", **fields):
    """POST /api/synthesize as multipart/form-data; bytes values are sent as files.

    The body is encoded in memory here: the test client itself would spool a large one to a
    temporary file, which the write checks below would (rightly) count against the app.
    """
    fields.setdefault("grid", FAST_GRID)
    data = {k: FileStorage(io.BytesIO(v), filename=filename) if isinstance(v, bytes) else v for k, v in fields.items()}
    boundary, body = encode_multipart(data)
    return client.post("/api/synthesize", data=body, content_type=f"multipart/form-data; boundary={boundary}")


def corr_maps(client, answer) -> list[dict]:
    maps = []
    for cand in answer["candidates"]:
        r = client.get(cand["corr"])
        assert r.status_code == 200, r.json
        maps.append(json.loads(r.data))
    return maps


def used_ids(client, answer) -> set[int]:
    return {int(i) for m in corr_maps(client, answer) for i in np.ravel(m["exemplar"])}


# ---------- what the page needs ----------


def test_model_and_examples_describe_the_model(served):
    _, client, _, _ = served
    info = client.get("/api/model").json
    assert info["signal"] == "lowres" and info["input_shape"] == [8, 8, 3] and info["size"] == 32
    assert info["bank_size"] == 6 and info["labels"] == ["cat", "dog", "dog/terrier"]
    assert info["photo_inputs"] is True and info["drawing"] == "photo"
    examples = client.get("/api/examples").json["examples"]
    assert [e["name"] for e in examples] == ["p0.png", "p1.png", "sub/p2.png", "sub/p3.png"]
    thumb = client.get(examples[2]["thumb"])
    assert thumb.status_code == 200 and decode(thumb.data).shape == (96, 96, 3)
    page = client.get("/")
    assert page.status_code == 200 and b"app.js" in page.data
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_pages_forbid_scripts_from_elsewhere_and_eval(served):
    _, client, _, _ = served
    policy = client.get("/").headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "unsafe-eval" not in policy and "unsafe-inline" not in policy
    assert client.get("/api/model").json["default_grid"] == "quick"  # the exact search: the short grid


def test_default_upload_limit_is_8_mb(model, tmp_path):
    app = create_app(model, work=tmp_path / "w")
    assert app.config["MAX_CONTENT_LENGTH"] == 8 * 1024 * 1024
    assert [e["kind"] for e in app.test_client().get("/api/examples").json["examples"]] == ["bank"] * 6


# ---------- synthesis from each kind of input ----------


def test_synthesize_from_a_validation_photo(served, model, tiny_run):
    _, client, _, _ = served
    r = post(client, source="example", example="1")
    assert r.status_code == 200, r.json
    answer = r.json
    assert sorted(c["spec"] for c in answer["candidates"]) == ["1:1:1", "2:1:3", "3:1:whole"]
    # best first: rank 1, 2, 3 with falling scores, each with its parts
    assert [c["rank"] for c in answer["candidates"]] == [1, 2, 3]
    scores = [c["score"] for c in answer["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert set(answer["candidates"][0]["score_parts"]) == {"consistency", "seam", "match"}
    assert all(c["voted"] in (0.0, 0.25, 0.5, 0.75, 1.0) for c in answer["candidates"])  # the default copy votes
    assert answer["title"] == "p1.png" and answer["size"] == 32
    for corr in corr_maps(client, answer):
        assert corr["shape"] == [32, 32]
        for key in ("exemplar", "sy", "sx", "sim"):
            assert np.asarray(corr[key]).shape == (32, 32)
        assert 0 <= np.min(corr["sy"]) and np.max(corr["sx"]) < 32
    assert set(answer["exemplars"]) >= {str(i) for i in used_ids(client, answer)}
    original = decode(client.get(answer["original"]).data)
    assert np.array_equal(original, tiny_run[2][1])  # the 32x32 photo itself
    shown_input = decode(client.get(answer["input"]).data)  # the 8x8 input, enlarged 4x (nearest)
    assert np.array_equal(shown_input[::4, ::4], model.input_from_photo(tiny_run[2][1]))
    by_name = post(client, source="example", example="sub/p2.png")
    assert by_name.status_code == 200 and by_name.json["title"] == "sub/p2.png"


def test_synthesize_from_uploads_as_photo_and_as_input(served, model, tiny_run):
    _, client, _, _ = served
    photo = tiny_run[2][3]
    r = post(client, source="upload", kind="photo", image=png(photo))
    assert r.status_code == 200, r.json
    assert np.array_equal(decode(client.get(r.json["input"]).data)[::4, ::4], model.input_from_photo(photo))
    x = tiny_run[1][3]  # an 8x8 input signal
    r = post(client, source="upload", kind="input", image=png(x))
    assert r.status_code == 200, r.json
    assert np.array_equal(decode(client.get(r.json["input"]).data)[::4, ::4], x)
    assert r.json["original"] is None


def test_synthesize_from_a_drawing(served, model):
    _, client, _, _ = served
    drawing = sketch(256)
    r = post(client, source="sketch", image=png(drawing))
    assert r.status_code == 200, r.json
    assert len(r.json["candidates"]) == 3
    # a low-resolution model takes the drawing as a photo
    assert np.array_equal(decode(client.get(r.json["input"]).data)[::4, ::4], model.input_from_photo(drawing))


def test_downloads_decode(served):
    _, client, _, _ = served
    answer = post(client, source="bank", bank_id="2").json
    cand = answer["candidates"][1]
    image = decode(client.get(cand["image"]).data)
    assert image.shape == (32, 32, 3)
    r = client.get(cand["npz"])
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    with np.load(io.BytesIO(r.data)) as z:
        assert set(z.files) == {"exemplar", "sy", "sx", "sim", "weights"}  # the default copy keeps its weights
        assert all(z[k].shape == (32, 32) for k in ("exemplar", "sy", "sx", "sim"))
        assert z["weights"].shape == (32, 32, 9) and np.allclose(z["weights"].sum(-1), 1.0)
        assert np.array_equal(z["exemplar"], corr_maps(client, answer)[1]["exemplar"])
    figure = decode(client.get(cand["figure"]).data)
    assert figure.shape[0] > 3 * 32 and figure.shape[0] == figure.shape[1]
    assert decode(client.get(answer["stage1"]).data).shape == (32, 32, 3)
    assert decode(client.get("/api/exemplars/5/photo.png").data).shape == (32, 32, 3)
    assert decode(client.get("/api/exemplars/5/input.png").data).shape == (8, 8, 3)


# ---------- choosing the exemplars ----------


@pytest.mark.parametrize("label, subset", [("dog", DOGS), ("dog/terrier", {4}), ("cat", {0, 1})])
def test_label_restriction_keeps_every_source_in_the_label(served, label, subset):
    _, client, _, _ = served
    r = post(client, source="example", example="0", labels=label)
    assert r.status_code == 200, r.json
    assert r.json["request"]["labels"] == [label]
    assert used_ids(client, r.json) <= subset
    assert {i for i, _ in r.json["neighbours"]} <= subset


def test_like_restriction_keeps_the_nearest_exemplars(served, model, tiny_run):
    _, client, _, _ = served
    example = tiny_run[2][5]
    r = post(client, source="example", example="0", like=png(example), like_k="2")
    assert r.status_code == 200, r.json
    assert used_ids(client, r.json) <= set(model.like_ids(example, 2).tolist())
    assert r.json["request"]["like_k"] == 2


def test_ids_and_re_synthesis_of_an_earlier_result(served):
    _, client, _, _ = served
    first = post(client, source="example", example="0", ids="1,3").json
    assert used_ids(client, first) <= {1, 3}
    again = post(client, source="result", result=first["id"], labels="dog")
    assert again.status_code == 200 and again.json["id"] != first["id"]
    assert used_ids(client, again.json) <= DOGS
    assert np.array_equal(decode(client.get(again.json["input"]).data), decode(client.get(first["input"]).data))


# ---------- bad requests: a 4xx with a message, never a 500 ----------


def _truncated_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = png(noise)
    return data[: len(data) // 2]


BAD_UPLOADS = {
    "not an image": (b"hello, I am plain text", 415, "not an image"),
    "empty file": (b"", 400, "empty"),
    "too large": (b"\x89PNG" + b"\0" * (1024 * 1024 + 10), 413, "limit"),
    "bomb beyond PIL's limit": (png_declaring(30000, 30000), 413, "pixels"),
    "bomb beyond the app's limit": (png_declaring(7000, 7000), 413, "megapixels"),
    "truncated": (_truncated_png(), 400, "truncated"),
}


@pytest.mark.parametrize("field", ["image", "like"])
@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_are_refused(served, case, field):
    _, client, _, _ = served
    data, status, words = BAD_UPLOADS[case]
    fields = {"source": "upload", "kind": "photo", "image": png(np.zeros((16, 16, 3), np.uint8))}
    fields[field] = data
    r = post(client, **fields)
    assert r.status_code == status, (case, r.status_code, r.data[:200])
    assert words in r.json["error"]


@pytest.mark.parametrize(
    "fields, status, words",
    [
        (
            {"source": "example", "example": "0", "labels": "wolf"},
            400,
            "unknown label 'wolf'; labels in this bank: cat, dog",
        ),
        ({"source": "example", "example": "0", "labels": "cat", "ids": "2"}, 400, "leaves no exemplar"),
        ({"source": "example", "example": "0", "ids": "6"}, 400, "0..5"),
        ({"source": "example", "example": "0", "ids": "-1"}, 400, "0..5"),
        ({"source": "example", "example": "0", "ids": "abc"}, 400, "integer"),
        ({"source": "example", "example": "0", "ids": "1.5"}, 400, "integer"),
        ({"source": "bank", "bank_id": "6"}, 400, "0..5"),
        ({"source": "bank", "bank_id": "-3"}, 400, "0..5"),
        ({"source": "bank", "bank_id": "1e3"}, 400, "integer"),
        ({"source": "example", "example": "4"}, 404, "no such example"),
        ({"source": "example", "example": "\u00b2"}, 404, "no such example"),
        ({"source": "example", "example": "\u0661"}, 404, "no such example"),
        ({"source": "example", "example": "-1"}, 404, "no such example"),
        ({"source": "bank", "bank_id": "\u0661"}, 400, "integer"),
        ({"source": "bank", "bank_id": "1_0"}, 400, "integer"),
        ({"source": "example", "example": "0", "ids": "\u00b2"}, 400, "integer"),
        ({"source": "example", "example": "0", "like_k": "\u00b2"}, 400, "like_k"),
        ({"source": "example", "example": "0", "grid": "1:1:0"}, 400, "window >= 1"),
        ({"source": "example", "example": "0", "grid": "1:\u00b2:1"}, 400, "n:first:window"),
        ({"source": "example", "example": "0", "grid": "1:3:1", "ids": "1"}, 400, "(1 chosen ids) has 1 exemplar(s)"),
        ({"source": "example", "example": "0", "grid": "nonsense"}, 400, "n:first:window"),
        ({"source": "example", "example": "0", "grid": "1:1000:1"}, 400, "neighbour rank"),
        ({"source": "example", "example": "0", "grid": ",".join(f"1:1:{w}" for w in range(1, 9))}, 400, "window sizes"),
        ({"source": "example", "example": "0", "grid": ",".join(["1:1:1"] * 101)}, 400, "101; the limit is 100"),
        ({"source": "example", "example": "0", "like_k": "many"}, 400, "like_k"),
        ({"source": "upload"}, 400, "needs an image"),
        ({"source": "upload", "kind": "thumbnail", "image": png(np.zeros((8, 8, 3), np.uint8))}, 400, "kind"),
        ({"source": "result", "result": "0" * 32}, 404, "no such result"),
        ({}, 400, "source must be one of"),
    ],
)
def test_bad_fields_are_refused_with_a_message(served, fields, status, words):
    _, client, _, _ = served
    r = post(client, **fields)
    assert r.status_code == status, r.json
    assert words in r.json["error"]


def test_candidates_beyond_a_restriction_are_dropped_with_a_note(served):
    _, client, _, _ = served
    r = post(client, source="example", example="0", grid="1:1:1,1:3:1", ids="1,4")
    assert r.status_code == 200, r.json
    assert [c["spec"] for c in r.json["candidates"]] == ["1:1:1"]
    assert r.json["notes"] == ["dropped candidate(s) 1:3:1: the exemplar set (2 chosen ids) has only 2 exemplar(s)"]


def test_a_huge_window_is_answered_quickly_as_the_whole_image(served):
    _, client, _, _ = served
    t0 = time.monotonic()
    r = post(client, source="example", example="0", grid="1:1:99999")
    assert r.status_code == 200, r.json
    assert time.monotonic() - t0 < 20
    assert [c["spec"] for c in r.json["candidates"]] == ["1:1:whole"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/exemplars/6/photo.png",
        "/api/exemplars/-1/photo.png",
        "/api/exemplars/1.5/photo.png",
        "/api/exemplars/abc/input.png",
        "/api/exemplars/1/y.npy",
        "/api/examples/4/thumb.png",
        "/api/examples/-1/thumb.png",
        "/api/results/" + "f" * 32 + "/input.png",
        "/api/nothing",
    ],
)
def test_bad_urls_are_4xx_json(served, url):
    _, client, _, _ = served
    r = client.get(url)
    assert 400 <= r.status_code < 500 and "error" in r.json


def test_busy_server_answers_503(served):
    app, client, _, _ = served
    gate = app.extensions["pixelnn"]["gate"]
    with gate.slot(), gate.slot():  # both synthesis slots taken
        r = post(client, source="example", example="0")
    assert r.status_code == 503 and "busy" in r.json["error"]
    assert post(client, source="example", example="0").status_code == 200


def test_cross_origin_posts_are_refused(served):
    _, client, _, _ = served
    r = client.post(
        "/api/synthesize", data={"source": "bank", "bank_id": "0"}, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    ok = client.post(
        "/api/synthesize",
        data={"source": "bank", "bank_id": "0", "grid": "1:1:1"},
        headers={"Origin": "http://localhost"},
    )
    assert ok.status_code == 200


# ---------- no path traversal, nothing written outside the work folder ----------

_WRITES: dict = {"on": False, "paths": []}


def _audit(event: str, args: tuple) -> None:
    if not _WRITES["on"]:
        return
    if event == "open":
        path, mode, flags = args
        writing = (
            any(c in mode for c in "wax+")
            if isinstance(mode, str)
            else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        )
        if writing and not isinstance(path, int):
            _WRITES["paths"].append(os.fsdecode(path))
    elif event in ("os.rename", "os.replace"):
        _WRITES["paths"].append(os.fsdecode(args[1]))
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.symlink", "os.link", "os.truncate"):
        _WRITES["paths"].append(os.fsdecode(args[0]) if not isinstance(args[0], int) else "<fd>")


sys.addaudithook(_audit)  # cannot be removed: it records only while _WRITES["on"]


@pytest.fixture
def writes(monkeypatch, tmp_path):
    """Record every file the app writes, with the temporary folder moved to an empty one to watch too."""
    sandbox = tmp_path / "system-tmp"
    sandbox.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(sandbox))
    _WRITES.update(on=True, paths=[])
    yield _WRITES["paths"], sandbox
    _WRITES["on"] = False


def _traversal_requests(rid: str, image: bytes):
    good = {"source": "example", "example": "0"}
    for evil in EVIL:
        yield {**good, "source": evil}
        yield {**good, "example": evil}
        yield {**good, "grid": evil}
        yield {**good, "labels": evil}
        yield {**good, "ids": evil}
        yield {**good, "like_k": evil}
        yield {"source": "bank", "bank_id": evil}
        yield {"source": "result", "result": evil}
        yield {"source": "upload", "kind": evil, "image": image}


def test_no_path_traversal_through_any_parameter(served, writes):
    _, client, work, _ = served
    paths, sandbox = writes
    answer = post(client, source="example", example="0").json
    rid = answer["id"]
    for fields in _traversal_requests(rid, png(np.zeros((8, 8, 3), np.uint8))):
        r = post(client, **fields)
        assert 400 <= r.status_code < 500, (fields, r.status_code)
        assert b"root:" not in r.data
    for evil in EVIL + [urllib.parse.quote(e, safe="") for e in EVIL]:
        for url in [
            f"/static/{evil}",
            f"/api/results/{evil}/input.png",
            f"/api/results/{rid}/{evil}",
            f"/api/results/{rid}/candidates/{evil}.png",
            f"/api/results/{rid}/candidates/0/{evil}",
            f"/api/exemplars/{evil}/photo.png",
            f"/api/examples/{evil}/thumb.png",
        ]:
            r = client.get(url, follow_redirects=True)  # '//' is redirected to '/' (308) first
            assert 400 <= r.status_code < 500, (url, r.status_code)
            assert b"root:" not in r.data
    # a file name that tries to climb out is ignored: nothing is stored under the client's name
    r = post(
        client, filename="../../../evil.png", source="upload", grid="1:1:1", image=png(np.zeros((8, 8, 3), np.uint8))
    )
    assert r.status_code == 200
    for cand in r.json["candidates"]:
        for key in ("image", "corr", "npz", "figure"):
            assert client.get(cand[key]).status_code == 200
    # an upload werkzeug would spool to a temporary file (over 500 KB) stays in memory
    noise = np.random.default_rng(1).integers(0, 256, (420, 420, 3), dtype=np.uint8)
    assert 500_000 < len(png(noise)) < 1024 * 1024
    assert post(client, source="upload", grid="1:1:1", image=png(noise)).status_code == 200
    assert paths, "the downloads above write files into the work folder"
    outside = [p for p in paths if not Path(p).resolve().is_relative_to(work.resolve())]
    assert outside == []
    assert list(sandbox.iterdir()) == []
    assert not any("evil" in p.name for p in work.rglob("*"))


def test_work_folder_keeps_only_the_last_results(model, tmp_path):
    work = tmp_path / "work"
    (work / ("a" * 32)).mkdir(parents=True)  # a stale result folder of an earlier server
    (work / "mine.txt").write_text("not the server's")
    client = create_app(model, work=work, keep=2).test_client()
    assert not (work / ("a" * 32)).exists() and (work / "mine.txt").exists()
    answers = [post(client, source="bank", bank_id=str(i), grid="1:1:1").json for i in range(3)]
    for a in answers:
        client.get(a["candidates"][0]["image"])
    assert client.get(answers[0]["input"]).status_code == 404
    assert client.get(answers[2]["input"]).status_code == 200
    assert sorted(p.name for p in work.iterdir() if p.is_dir()) == sorted(a["id"] for a in answers[1:])


# ---------- the real server, several clients at once ----------


def test_concurrent_requests_get_answers_and_the_server_survives(model, tmp_path):
    app = create_app(model, work=tmp_path / "work", concurrency=2, wait_s=2.0)
    gate = app.extensions["pixelnn"]["gate"]
    with running(app) as base:
        assert base.startswith("http://127.0.0.1:")

        def one(i: int) -> tuple[int, dict]:
            body = urllib.parse.urlencode({"source": "bank", "bank_id": str(i % 6), "grid": "1:1:1,2:1:3"}).encode()
            try:
                with urllib.request.urlopen(f"{base}/api/synthesize", data=body, timeout=60) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        with gate.slot(), gate.slot(), ThreadPoolExecutor(4) as pool:  # slots taken: all wait 2 s, then 503
            busy = list(pool.map(one, range(4)))
        assert [s for s, _ in busy] == [503] * 4 and all("busy" in a["error"] for _, a in busy)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(8)))
        statuses = [s for s, _ in answers]
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) >= 2
        assert all("candidates" in a if s == 200 else "busy" in a["error"] for s, a in answers)
        assert len({a["id"] for s, a in answers if s == 200}) == statuses.count(200)
        with urllib.request.urlopen(f"{base}/api/model", timeout=30) as r:
            assert r.status == 200 and json.loads(r.read())["bank_size"] == 6
        first = next(a for s, a in answers if s == 200)
        with urllib.request.urlopen(base + first["candidates"][1]["corr"], timeout=30) as r:
            assert json.loads(r.read())["shape"] == [32, 32]
        threads = [t.name for t in threading.enumerate()]
        assert "waitress" in threads


def test_example_list_skips_hidden_files_and_folders(model, tiny_run, tmp_path):
    val = photo_folder(tmp_path / "val", tiny_run[2][:2])
    shown = sorted(p.name for p in val.iterdir())
    (val / ".secret.png").write_bytes(png(np.zeros((8, 8, 3), np.uint8)))
    (val / ".git").mkdir()
    (val / ".git" / "x.png").write_bytes(png(np.zeros((8, 8, 3), np.uint8)))
    client = create_app(model, val=val, work=tmp_path / "work").test_client()
    names = [e["name"] for e in client.get("/api/examples").json["examples"]]
    assert names == shown


def test_errors_never_name_absolute_server_paths(model, tiny_run, tmp_path):
    val = photo_folder(tmp_path / "val", tiny_run[2][:2])
    client = create_app(model, val=val, work=tmp_path / "work").test_client()
    first = client.get("/api/examples").json["examples"][0]["name"]
    (val / first).write_bytes(b"no longer an image")  # the listed file became unreadable
    r = post(client, source="example", example="0", grid="1:1:1")
    assert r.status_code == 400
    assert first in r.json["error"] and "cannot read" in r.json["error"]
    assert str(tmp_path) not in r.json["error"] and "/" + first not in r.json["error"]


def test_a_body_over_the_servers_limit_gets_a_json_413(model, tmp_path):
    app = create_app(model, work=tmp_path / "work", max_upload_mb=1.0)
    with running(app) as base:
        # only the headers are sent: waitress refuses the declared length before reading the body
        host = urllib.parse.urlsplit(base)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        conn.putrequest("POST", "/api/synthesize")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(3 * 1024 * 1024))
        conn.endheaders()
        answer = conn.getresponse()
        assert answer.status == 413
        assert answer.getheader("Content-Type") == "application/json"
        error = json.loads(answer.read())["error"]
        conn.close()
        assert "Request Entity Too Large" in error


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A tiny 8x8 JPEG whose frame header (SOF0) is rewritten to declare width x height."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buffer, format="JPEG", quality=50)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_upload_cap_is_fitted_to_the_model_and_checked_before_decoding(served, model, monkeypatch):
    _, client, _, _ = served
    bomb = _jpeg_declaring(6000, 6000)
    assert len(bomb) < 1000 and Image.open(io.BytesIO(bomb)).size == (6000, 6000)
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or pytest.fail("decoded"))
    for field in ("image", "like"):
        fields = (
            {"source": "upload", "image": bomb}
            if field == "image"
            else {"source": "bank", "bank_id": "0", "like": bomb}
        )
        r = post(client, **fields)
        assert r.status_code == 413, r.json
        assert "6000x6000" in r.json["error"] and "limit is 16 megapixels" in r.json["error"]
    assert decoded == []
    assert client.get("/api/model").json["max_megapixels"] == 16.0
    assert pixel_cap(32) == 16_000_000 and pixel_cap(200) == 40_000_000 and pixel_cap(150) == 4800**2


def test_large_jpegs_are_decoded_only_at_the_scale_needed():
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1000, 2000, 3), np.uint8)).save(buffer, format="JPEG")
    assert decode_image(buffer.getvalue(), need=64).shape == (125, 250, 3)  # 1/8 scale, both sides >= 64
    assert decode_image(buffer.getvalue(), need=300).shape == (500, 1000, 3)
    assert decode_image(buffer.getvalue()).shape == (1000, 2000, 3)


def test_running_out_of_memory_while_decoding_is_reported_as_too_large(served, monkeypatch):
    _, client, _, _ = served

    def no_memory(self):
        raise MemoryError

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_memory)
    r = post(client, source="upload", image=png(np.zeros((8, 8, 3), np.uint8)))
    assert r.status_code == 413 and "too large" in r.json["error"]


def idle_sockets(stack, base: str, count: int) -> list:
    """`count` connections to the server at `base` (127.0.0.1) that send nothing, or half a request."""
    import socket

    port = urllib.parse.urlsplit(base).port
    socks = []
    for i in range(count):
        s = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        if i % 2:
            s.sendall(b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        socks.append(s)
    return socks


def test_a_crowd_of_idle_connections_does_not_lock_others_out(model, tmp_path):
    """150 silent sockets (waitress's default allows 100 connections, each idle for 120 s)."""
    from contextlib import ExitStack

    app = create_app(model, work=tmp_path / "work")
    with running(app) as base, ExitStack() as stack:
        idle_sockets(stack, base, 150)
        t0 = time.monotonic()
        with urllib.request.urlopen(base + "/api/model", timeout=5) as r:
            assert r.status == 200 and json.loads(r.read())["bank_size"] == 6
        assert time.monotonic() - t0 < 3


def test_idle_connections_are_closed_after_the_idle_timeout(model, tmp_path):
    from contextlib import ExitStack

    from pixelnn.serve import server

    assert server.IDLE_TIMEOUT_S <= 15 and server.CLEANUP_S <= 5 and server.CONNECTIONS >= 300
    app = create_app(model, work=tmp_path / "work")
    with running(app, idle_timeout_s=1) as base, ExitStack() as stack:
        socks = idle_sockets(stack, base, 20)
        t0 = time.monotonic()
        for s in socks:
            s.settimeout(max(8 - (time.monotonic() - t0), 0.1))
            for _ in range(100):  # read until the server closes (waitress may answer a half request first)
                if not s.recv(4096):
                    break
        assert time.monotonic() - t0 < 6  # 1 s idle + up to 1 s until waitress looks, with slack


def test_the_copy_mode_is_chosen_per_request_and_checked(served):
    _, client, _, _ = served
    plain = post(client, source="example", example="1", copy="eq3")
    assert plain.status_code == 200 and plain.json["request"]["copy"] == "eq3"
    npz = np.load(io.BytesIO(client.get(plain.json["candidates"][0]["npz"]).data))
    assert "weights" not in npz.files  # Eq. 3: one source per pixel, nothing to blend
    voted = post(client, source="example", example="1", copy="coherent-vote")
    npz = np.load(io.BytesIO(client.get(voted.json["candidates"][0]["npz"]).data))
    assert npz["weights"].shape == (32, 32, 9)  # the blending weights travel with the map
    bad = post(client, source="example", example="1", copy="smudge")
    assert bad.status_code == 400 and "copy must be one of eq3, coherent, vote, coherent-vote" in bad.json["error"]


def test_only_a_normal_map_input_has_a_mask(served, tiny_run):
    _, client, _, _ = served
    r = post(client, source="upload", kind="photo", image=png(tiny_run[2][1]))
    assert r.status_code == 200, r.json
    assert r.json["mask"] is None
    missing = client.get(f"/api/results/{r.json['id']}/mask.png")
    assert missing.status_code == 404 and "normal-map" in missing.json["error"]

"""Hostile input, generated: the web API and the CLI answer every request and argument list with a
clean refusal (a JSON 4xx; exit code 2) or a result, never a crash (a 500, a traceback).

Derandomized, so CI sees the same cases each run. PIXELNN_FUZZ_EXAMPLES=5000 runs more of them.
"""

from __future__ import annotations

import io
import json
import os
import urllib.parse
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from serve_support import FAST_GRID, photo_folder, png, png_declaring

from pixelnn.serve import create_app
from pixelnn.synth.pipeline import PixelNN

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore:dropped candidate")]

EXAMPLES = int(os.environ.get("PIXELNN_FUZZ_EXAMPLES", "0"))
COUNTS: dict[str, Counter] = {}  # request kind -> outcomes, printed at the end of the module (pytest -s)


def fuzz(default: int):
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def tally(kind: str, outcome: str) -> None:
    COUNTS.setdefault(kind, Counter())[outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    for kind, counter in sorted(COUNTS.items()):
        print(f"\nfuzzed {kind}: {sum(counter.values())} -> {dict(sorted(counter.items()))}")


# ---------------------------------------------------------------- values a hostile user types

ODD = [
    "", " ", "0", "-0", "-1", "+1", "1e3", "1.5", "٣", "²", "１２", "0x10", "1_000", "nan", "inf", "-inf", "None",
    "null", "true", "\x00", "\t\n", "9" * 40, "-" + "9" * 40, "a" * 3000, "é" * 700, "👍", "..", "../../etc/passwd",
    "%00", "paper72", "quick", "global", "whole", "1:1:1", "1:1:whole", "0:1:1", "1:0:1", "1:1:0", "-1:1:1",
    "1:1:-3", "1:1:1.5", "1:1", "1:1:1:1", ":::", ",", ",,,", "1,2,,3", "1:1:999999999999", "100:1:1", "50:50:whole",
    "cat", "dog", "dog/terrier", "Dog", "cat/", "/", "3,17,42", "0,1,2,3,4,5", "5", "6", "-6", "2147483648",
    "18446744073709551617",
]


def grid_strings():
    item = st.tuples(
        st.integers(-3, 200) | st.sampled_from([10**12, 2**63]),
        st.integers(-3, 80) | st.sampled_from([10**12]),
        st.integers(-2, 80).map(str) | st.sampled_from(["whole", "WHOLE", "", "x", "1e9", "٣"]),
    ).map(lambda t: f"{t[0]}:{t[1]}:{t[2]}")
    return st.lists(item, min_size=0, max_size=8).map(",".join)


def values():
    return st.one_of(
        st.sampled_from(ODD),
        st.integers(-(10**30), 10**30).map(str),
        st.integers(-3, 12).map(str),
        st.text(max_size=40),
        st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=12),
        grid_strings(),
        st.lists(st.integers(-3, 9), max_size=6).map(lambda xs: ",".join(map(str, xs))),
    )


def image_bytes(kind: str, seed: int, w: int, h: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG" if kind == "png" else "JPEG")
    return buffer.getvalue()


@st.composite
def uploads(draw):
    kind = draw(st.sampled_from(["png", "jpeg", "truncated png", "truncated jpeg", "bytes", "bomb", "header"]))
    w, h = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "bomb":
        return png_declaring(draw(st.integers(1, 60_000)), draw(st.integers(1, 60_000)))
    if kind == "header":
        return draw(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBP"]))
    data = image_bytes("png" if "png" in kind else "jpeg", draw(st.integers(0, 9)), w, h)
    if kind.startswith("truncated"):
        data = data[: draw(st.integers(1, max(len(data) - 1, 1)))]
    return data


FIELDS = ["source", "example", "bank_id", "result", "kind", "grid", "labels", "ids", "like_k"]
PLAUSIBLE = {
    "source": st.sampled_from(["example", "bank", "upload", "sketch", "result"]),
    "example": st.sampled_from(["0", "1", "3", "p0.png", "sub/p2.png"]),
    "bank_id": st.sampled_from(["0", "2", "5"]),
    "result": st.just("REAL"),
    "kind": st.sampled_from(["photo", "input"]),
    "grid": st.sampled_from([FAST_GRID, "1:1:1", "2:1:whole,1:2:3", "global"]),
    "labels": st.sampled_from(["cat", "dog", "dog/terrier"]),
    "ids": st.sampled_from(["0,1", "2", "3,4,5"]),
    "like_k": st.sampled_from(["1", "3", "25"]),
}


@st.composite
def forms(draw):
    """Form fields of POST /api/synthesize: each one absent, plausible or hostile."""
    fields = {}
    for name in FIELDS:
        how = draw(st.sampled_from(["absent", "plausible", "plausible", "hostile"]))
        if how != "absent" or name in ("source", "grid"):
            fields[name] = draw(values() if how == "hostile" else PLAUSIBLE[name])
    for name in ("image", "like"):
        how = draw(st.sampled_from(["absent", "plausible", "hostile"] if name == "image" else ["absent", "absent", "plausible", "hostile"]))
        if how == "plausible":
            fields[name] = image_bytes(draw(st.sampled_from(["png", "jpeg"])), draw(st.integers(0, 9)), draw(st.integers(1, 60)), draw(st.integers(1, 60)))
        elif how == "hostile":
            fields[name] = draw(uploads())
    return fields


# ---------------------------------------------------------------- the app under attack


@pytest.fixture(scope="module")
def model(tiny_run):
    return PixelNN.load(tiny_run[0])


@pytest.fixture(scope="module")
def app(model, tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    val = photo_folder(root / "val", tiny_run[2][:4])
    return create_app(model, val=val, work=root / "work", keep=8, max_upload_mb=0.5, wait_s=5)


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def result_id(client, tiny_run):
    r = post(client, {"source": "upload", "kind": "input", "image": png(tiny_run[1][0]), "grid": FAST_GRID})
    assert r.status_code == 200, r.json
    return r.json["id"]


def post(client, fields: dict):
    data = {}
    for k, v in fields.items():
        data[k] = FileStorage(io.BytesIO(v), filename="f.png") if isinstance(v, bytes) else v
    boundary, body = encode_multipart(data)
    return client.post("/api/synthesize", data=body, content_type=f"multipart/form-data; boundary={boundary}")


def check_answer(response, kind: str, head: bool = False) -> None:
    """No 500, no traceback; an error is JSON naming the problem (a HEAD answer has no body)."""
    body = response.get_data()
    assert response.status_code < 500 or response.status_code == 503, (response.status_code, body[:500])
    assert b"Traceback" not in body
    if response.status_code >= 400:
        assert response.mimetype == "application/json", (response.status_code, body[:200])
        error = "(HEAD: no body)" if head else json.loads(body)["error"]
        assert isinstance(error, str) and len(error) > 5
        tally(kind, f"{response.status_code}")
    else:
        tally(kind, "ok")


def still_works(client, tiny_run) -> None:
    r = post(client, {"source": "bank", "bank_id": "1", "grid": FAST_GRID})
    assert r.status_code == 200, r.json
    assert len(r.json["candidates"]) == 3


@fuzz(300)
@given(fields=forms())
def test_synthesize_never_crashes(client, tiny_run, result_id, fields):
    if fields.get("result") == "REAL":
        fields["result"] = result_id
    check_answer(post(client, fields), "POST /api/synthesize")


def test_the_app_still_answers_after_the_synthesize_fuzz(client, tiny_run):
    still_works(client, tiny_run)


ROUTES = [
    "/", "/api/model", "/api/examples", "/api/examples/{a}/thumb.png", "/api/results/{r}/input.png",
    "/api/results/{r}/stage1.png", "/api/results/{r}/original.png", "/api/results/{r}/candidates/{a}.png",
    "/api/results/{r}/candidates/{a}/corr.json", "/api/results/{r}/candidates/{a}/corr.npz",
    "/api/results/{r}/candidates/{a}/figure.png", "/api/exemplars/{a}/photo.png", "/api/exemplars/{a}/input.png",
    "/api/synthesize", "/api/{s}", "/{s}", "/static/{s}", "/api/results/{s}/{s}.png",
]


def segment():
    return st.just("REAL") | st.sampled_from(["0", "1", "2", "5", "6", "99", "-1", "٣", "1e3", "..", "%2e%2e"]) | values()


@fuzz(300)
@given(
    method=st.sampled_from(["GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
    route=st.sampled_from(ROUTES),
    a=segment(),
    r=segment(),
    s=segment(),
    query=st.dictionaries(st.sampled_from(FIELDS), values(), max_size=3),
    body=st.none() | st.binary(max_size=200),
    content_type=st.sampled_from([None, "application/json", "multipart/form-data", "multipart/form-data; boundary=x",
                                  "application/x-www-form-urlencoded", "text/plain; charset=utf-16"]),
)
def test_every_route_never_crashes(client, result_id, method, route, a, r, s, query, body, content_type):
    parts = {k: urllib.parse.quote(result_id if v == "REAL" else v, safe="%") for k, v in dict(a=a, r=r, s=s).items()}
    path = route.format(**parts)
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.open(path, method=method, query_string=query, data=body, headers=headers)
    kind = f"{method if method in ('GET', 'POST') else 'other methods'} {route}"
    check_answer(response, kind, head=method == "HEAD")


def test_the_app_still_answers_after_the_route_fuzz(client, tiny_run):
    still_works(client, tiny_run)
    assert client.get("/api/model").status_code == 200

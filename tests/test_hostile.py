"""Hostile input, generated: the web API and the CLI answer every request and argument list with a
clean refusal (a JSON 4xx; exit code 2) or a result, never a crash (a 500, a traceback).

Derandomized, so CI sees the same cases each run. PIXELNN_FUZZ_EXAMPLES=5000 runs more of them.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import urllib.parse
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from serve_support import FAST_GRID, photo_folder, png, png_declaring, tiny_app

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
    "",
    " ",
    "0",
    "-0",
    "-1",
    "+1",
    "1e3",
    "1.5",
    "٣",
    "²",
    "１２",
    "0x10",
    "1_000",
    "nan",
    "inf",
    "-inf",
    "None",
    "null",
    "true",
    "\x00",
    "\t\n",
    "9" * 40,
    "-" + "9" * 40,
    "a" * 3000,
    "é" * 700,
    "👍",
    "..",
    "../../etc/passwd",
    "%00",
    "paper72",
    "quick",
    "global",
    "whole",
    "1:1:1",
    "1:1:whole",
    "0:1:1",
    "1:0:1",
    "1:1:0",
    "-1:1:1",
    "1:1:-3",
    "1:1:1.5",
    "1:1",
    "1:1:1:1",
    ":::",
    ",",
    ",,,",
    "1,2,,3",
    "1:1:999999999999",
    "100:1:1",
    "50:50:whole",
    "cat",
    "dog",
    "dog/terrier",
    "Dog",
    "cat/",
    "/",
    "3,17,42",
    "0,1,2,3,4,5",
    "5",
    "6",
    "-6",
    "2147483648",
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
        return draw(
            st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBP"])
        )
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
    "labels": st.sampled_from(["cat", "dog", "dog/terrier"])
    | st.lists(st.sampled_from(["cat", "dog", "dog/terrier"]), max_size=3),
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
            fields[name] = draw(
                (st.lists(values(), max_size=3) | values())
                if how == "hostile" and name == "labels"
                else values()
                if how == "hostile"
                else PLAUSIBLE[name]
            )
    for name in ("image", "like"):
        how = draw(
            st.sampled_from(
                ["absent", "plausible", "hostile"] if name == "image" else ["absent", "absent", "plausible", "hostile"]
            )
        )
        if how == "plausible":
            fields[name] = image_bytes(
                draw(st.sampled_from(["png", "jpeg"])),
                draw(st.integers(0, 9)),
                draw(st.integers(1, 60)),
                draw(st.integers(1, 60)),
            )
        elif how == "hostile":
            fields[name] = draw(uploads())
    return fields


# ---------------------------------------------------------------- the app under attack


@pytest.fixture(scope="module")
def app(model, tiny_run, tmp_path_factory):
    return tiny_app(model, tiny_run[2], tmp_path_factory.mktemp("hostile"), keep=100_000, max_upload_mb=0.5, wait_s=5)[
        0
    ]


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
@given(fields=forms(), urlencoded=st.booleans())
def test_synthesize_never_crashes(client, tiny_run, result_id, fields, urlencoded):
    if fields.get("result") == "REAL":
        fields["result"] = result_id
    if urlencoded and not any(isinstance(v, bytes) for v in fields.values()):
        check_answer(client.post("/api/synthesize", data=fields), "POST /api/synthesize (urlencoded)")
    else:
        check_answer(post(client, fields), "POST /api/synthesize")


def test_the_app_still_answers_after_the_synthesize_fuzz(client, tiny_run):
    still_works(client, tiny_run)


ROUTES = [
    "/",
    "/api/model",
    "/api/examples",
    "/api/examples/{a}/thumb.png",
    "/api/results/{r}/input.png",
    "/api/results/{r}/stage1.png",
    "/api/results/{r}/original.png",
    "/api/results/{r}/candidates/{a}.png",
    "/api/results/{r}/candidates/{a}/corr.json",
    "/api/results/{r}/candidates/{a}/corr.npz",
    "/api/results/{r}/candidates/{a}/figure.png",
    "/api/exemplars/{a}/photo.png",
    "/api/exemplars/{a}/input.png",
    "/api/synthesize",
    "/api/{s}",
    "/{s}",
    "/static/{s}",
    "/api/results/{s}/{s}.png",
]


def segment():
    return (
        st.just("REAL") | st.sampled_from(["0", "1", "2", "5", "6", "99", "-1", "٣", "1e3", "..", "%2e%2e"]) | values()
    )


@fuzz(300)
@given(
    method=st.sampled_from(["GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
    route=st.sampled_from(ROUTES),
    a=segment(),
    r=segment(),
    s=segment(),
    query=st.dictionaries(st.sampled_from(FIELDS), values(), max_size=3),
    body=st.none() | st.binary(max_size=200),
    content_type=st.sampled_from(
        [
            None,
            "application/json",
            "multipart/form-data",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "text/plain; charset=utf-16",
        ]
    ),
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


# ---------------------------------------------------------------- the CLI under attack

NUMBERS = {  # option -> verbs that take it
    "--steps": ["train", "train-pix2pix", "demo"],
    "--epochs": ["train", "train-pix2pix"],
    "--minutes": ["train", "train-pix2pix", "demo"],
    "--batch": ["train", "train-pix2pix"],
    "--width": ["train"],
    "--weight-decay": ["train"],
    "--descriptors": ["train", "index"],
    "--size": ["train", "index", "train-pix2pix", "evaluate"],
    "--factor": ["train", "index", "train-pix2pix", "evaluate"],
    "--limit": ["train", "index", "synthesize", "train-pix2pix", "evaluate"],
    "--like-k": ["synthesize"],
    "--ngf": ["train-pix2pix"],
    "--ndf": ["train-pix2pix"],
    "--seed": ["evaluate"],
    "--samples": ["evaluate"],
    "--train": ["demo"],
    "--inputs": ["demo"],
    "--port": ["serve"],
    "--threads": ["serve"],
}
CHOICES = {
    "--signal": ["lowres", "edges", "canny", "LOWRES", ""],
    "--pairs": ["AtoB", "BtoA", "x"],
    "--precision": ["auto", "fp32", "bf16", "fp16"],
    "--search": ["auto", "exact", "fast", "slow"],
    "--device": ["cpu", "auto", "cuda", "cuda:7", "tpu", "cpu:0", ""],
    "--grid": ["paper72", "global", "quick"],
    "--ids": ["0,1", "5", "6", "-1", "a,b", "٣"],
    "--restrict": ["cat", "dog", "bird", ""],
    "--host": ["127.0.0.1", "localhost", "127.0.0.2"],
}
CHOICE_VERBS = {
    "--signal": ["train", "index", "train-pix2pix", "evaluate"],
    "--pairs": ["train", "index", "train-pix2pix", "evaluate"],
    "--precision": ["train", "train-pix2pix", "demo"],
    "--search": ["synthesize"],
    "--device": ["synthesize"],
    "--grid": ["synthesize"],
    "--ids": ["synthesize"],
    "--restrict": ["synthesize"],
    "--host": ["serve"],
}
VERBS = ["train", "index", "synthesize", "serve", "demo", "train-pix2pix", "evaluate"]


def number_texts():
    return st.one_of(
        st.integers(-3, 40).map(str),
        st.sampled_from(["0", "-1", "1e309", "nan", "inf", "-inf", "0.0", "1e-320", "٣", "1_0", ""]),
        st.integers(-(10**20), 10**20).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
    )


@st.composite
def argument_lists(draw, verb: str, paths: dict):
    argv = [verb]
    if verb in ("index", "synthesize", "serve", "evaluate"):
        argv += ["--model", paths["model"]]
    if verb in ("train", "index", "train-pix2pix", "evaluate") or (verb == "synthesize" and draw(st.booleans())):
        argv += ["--data", paths["data"], "--signal", "lowres", "--size", "32", "--factor", "4"]
    if verb not in ("serve", "index"):
        argv += ["--out", str(paths["out"])]
    if verb == "synthesize":
        argv += ["--limit", "1"]  # the default grid (paper72) on one input, unless a later --limit says otherwise
    options = [o for o, verbs in NUMBERS.items() if verb in verbs] + [
        o for o, verbs in CHOICE_VERBS.items() if verb in verbs
    ]
    for option in draw(st.lists(st.sampled_from(options), unique=True, max_size=6)) if options else []:
        if option in NUMBERS:
            argv += [option, draw(number_texts())]
        elif option == "--grid":
            argv += [option, draw(st.sampled_from(CHOICES[option]) | grid_strings())]
        else:
            argv += [option, draw(st.sampled_from(CHOICES[option]) | st.text(max_size=8))]
    if verb == "train":
        argv.append("--no-index")
    if verb == "synthesize" and "--data" not in argv:
        argv.append(paths["input"])
    return argv


class Reached:
    """Stand-ins for the long jobs (training, indexing, evaluating, serving): the fuzz checks what
    reaches them, not hours of work."""

    def __init__(self):
        self.calls = []

    def __call__(self, name, result=None):
        def stub(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return result

        return stub


@pytest.fixture(scope="module")
def cli(tiny_run, tmp_path_factory):
    """(paths for argument lists, Reached) with the long jobs stubbed out for the module."""
    from types import SimpleNamespace

    import pixelnn.baselines.pix2pix.run as pix2pix
    import pixelnn.commands as commands
    import pixelnn.demo as demo
    import pixelnn.evaluate.run as evaluate_run
    import pixelnn.serve.server as server

    root = tmp_path_factory.mktemp("cli")
    data = photo_folder(root / "data", tiny_run[2])
    Image.fromarray(tiny_run[1][0]).save(root / "input.png")
    reached = Reached()
    patch = pytest.MonkeyPatch()
    patch.setattr(commands, "train_run", reached("train_run", {}))
    patch.setattr(commands, "report_training", lambda metrics: [])
    patch.setattr(commands, "index_arrays", reached("index_arrays", {"count": 0, "shards": []}))
    patch.setattr(pix2pix, "train_run", reached("pix2pix", {}))
    patch.setattr(
        evaluate_run, "evaluate_to_folder", reached("evaluate", SimpleNamespace(report={"methods": {}}, figures=[]))
    )
    patch.setattr(demo, "run_demo", reached("demo"))
    patch.setattr(server, "serve_forever", reached("serve"))
    (root / "tmp").mkdir()
    patch.setattr(tempfile, "tempdir", str(root / "tmp"))  # serve's work folders go here, not to /tmp
    paths = {"model": str(tiny_run[0]), "data": str(data), "out": root / "out", "input": str(root / "input.png")}
    yield paths, reached
    patch.undo()


def run_cli(argv: list[str]) -> tuple[int, str]:
    """(exit code, stderr) of `pixelnn ARGV`; argparse's SystemExit counts as its code."""
    import contextlib

    from pixelnn.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def assert_sane(argv: list[str]) -> None:
    """What an accepted argument list may hold: counts the jobs can use, finite positive minutes."""
    least = {"--steps": 0, "--epochs": 0, "--seed": 0, "--port": 0}
    for option, text in zip(argv, argv[1:]):
        if option in ("--minutes", "--weight-decay"):
            value = float(text)
            assert math.isfinite(value) and (value > 0 if option == "--minutes" else value >= 0), (option, text)
        elif option in NUMBERS:
            assert int(text) >= least.get(option, 1), (option, text)
            assert option != "--size" or int(text) <= 4096, (option, text)
            assert option != "--port" or int(text) <= 65535, (option, text)
            assert option not in ("--width", "--ngf", "--ndf") or int(text) <= 1024, (option, text)
            assert option != "--threads" or int(text) <= 256, (option, text)


@pytest.mark.parametrize("verb", VERBS)
def test_cli_arguments_never_crash(cli, verb):
    paths, reached = cli

    @fuzz(60 if verb == "synthesize" else 40)
    @given(argv=argument_lists(verb, paths))
    def one(argv):
        code, err = run_cli(argv)
        assert code in (0, 2), (argv, code, err[-2000:])
        assert "Traceback" not in err, (argv, err[-2000:])
        if code == 2:
            assert "error" in err, (argv, err)
        else:
            assert_sane(argv)
        tally(f"pixelnn {verb}", f"exit {code}")

    one()


# ---------------------------------------------------------------- raw bytes to the real server


@st.composite
def raw_requests(draw):
    """HTTP/1.1 requests as bytes, their parts perhaps mangled: what waitress parses before Flask."""
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"BREW", b"get", b""]) | st.binary(max_size=8))
    target = draw(
        st.sampled_from(
            [b"/api/model", b"/api/synthesize", b"/", b"*", b"http://127.0.0.1/api/model", b"//x", b"/%ff%00"]
        )
        | st.binary(max_size=40)
    )
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.x", b""]))
    headers = [b"Host: 127.0.0.1"]
    for _ in range(draw(st.integers(0, 4))):
        headers.append(
            draw(
                st.sampled_from(
                    [
                        b"Content-Length: -1",
                        b"Content-Length: 99999999999999999999",
                        b"Content-Length: 5",
                        b"Content-Length: abc",
                        b"Transfer-Encoding: chunked",
                        b"Transfer-Encoding: gzip, chunked",
                        b"Content-Type: multipart/form-data",
                        b"Content-Type: multipart/form-data; boundary=b",
                        b"Expect: 100-continue",
                        b"Origin: http://evil.example",
                        b"Host: evil.example",
                        b"X: \xff\xfe",
                        b" folded",
                        b"NoColon",
                        b"Content-Length: 1\r\nContent-Length: 2",
                    ]
                )
                | st.binary(max_size=30).filter(lambda b: b"\n" not in b)
            )
        )
    body = draw(
        st.sampled_from(
            [
                b"",
                b"0\r\n\r\n",
                b"zz\r\n",
                b'--b\r\nContent-Disposition: form-data; name="source"\r\n\r\nbank\r\n--b--\r\n',
            ]
        )
        | st.binary(max_size=60)
    )
    return method + b" " + target + b" " + version + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send `data` to 127.0.0.1:port, close the sending side, read the answer (bounded)."""
    import socket
    import time

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks, deadline = [], time.monotonic() + 8
        for _ in range(1000):
            chunk = s.recv(65536) if time.monotonic() < deadline else b""
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def live(app):
    from serve_support import running

    with running(app, idle_timeout_s=2) as base:
        yield int(base.rsplit(":", 1)[1])


@fuzz(150)
@given(data=raw_requests())
def test_raw_requests_to_the_real_server_never_crash(live, data):
    answer = raw_exchange(live, data)
    if not answer:
        tally("raw bytes to waitress", "closed without an answer")
        return
    status_line, _, rest = answer.partition(b"\r\n")
    parts = status_line.split(b" ")
    assert parts[0].startswith(b"HTTP/1."), answer[:300]
    status = int(parts[1])
    assert status != 500, answer[:600]  # (waitress's 501 for a transfer coding it lacks is a fair answer)
    assert b"Traceback" not in answer
    head, _, body = rest.partition(b"\r\n\r\n")
    if status >= 400 and body:
        assert b"application/json" in head.lower(), answer[:600]
    tally("raw bytes to waitress", str(status))


def test_the_real_server_still_answers_after_the_raw_fuzz(live):
    answer = raw_exchange(live, b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b'"bank_size":6' in answer.replace(b" ", b"")

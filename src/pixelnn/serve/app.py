"""The Flask app of `pixelnn serve`: a page (static/) and a small JSON API around one loaded model.

    GET  /                                         the page
    GET  /api/model                                signal, shapes, bank size, labels, grids, copy modes, limits
    GET  /api/examples                             the listed inputs; /api/examples/<i>/thumb.png
    POST /api/synthesize                           form: source=example|bank|upload|sketch|result and
                                                   example / bank_id / image (+kind) / result, grid, copy,
                                                   labels (repeatable), ids, like (an image), like_k
    GET  /api/results/<id>/input.png|mask.png|stage1.png|original.png   (mask: of a normal-map input)
    GET  /api/results/<id>/candidates/<i>.png      a candidate; .../<i>/corr.json|corr.npz|figure.png
    GET  /api/exemplars/<id>/photo.png|input.png   a bank exemplar's photo y or input x

Every refusal is a 4xx JSON {"error": message}. Ids are integers checked against the bank or ids
made by the server; no request string is ever joined into a file path.
"""

from __future__ import annotations

import atexit
import io
import logging
import re
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Request, jsonify, request, send_file, send_from_directory
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..data.options import EDGE_SIGNALS
from ..errors import PixelNNError
from ..pixels import to_uint8
from ..synth.coherence import COPY_MODES, DEFAULT_COPY
from ..synth.request import Request as SynthesisRequest  # flask has a Request too
from . import inputs, params, render
from .results import Entry, ResultStore
from .uploads import MAX_PIXELS, decode_image, pixel_cap, png_bytes, read_file

STATIC = Path(__file__).parent / "static"
LOOPBACK_HOSTS = ["localhost", "127.0.0.1"]
log = logging.getLogger(__name__)


class InMemoryRequest(Request):
    """Uploads stay in memory (bounded by MAX_CONTENT_LENGTH): no temporary files outside the work folder."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


class Gate:
    """At most `slots` syntheses at once; a request that waits longer than `wait_s` gets a 503."""

    def __init__(self, slots: int = 2, wait_s: float = 60.0) -> None:
        self.slots, self.wait_s = max(int(slots), 1), wait_s
        self._semaphore = threading.BoundedSemaphore(self.slots)

    @contextmanager
    def slot(self):
        if not self._semaphore.acquire(timeout=self.wait_s):
            raise params.RequestError(
                f"the server is busy: {self.slots} syntheses are running and none finished within "
                f"{self.wait_s:g} s; try again in a moment",
                503,
            )
        try:
            yield
        finally:
            self._semaphore.release()


def create_app(
    model,
    val: str | Path | None = None,
    work: str | Path | None = None,
    *,
    keep: int = 12,
    max_upload_mb: float = 8.0,
    max_pixels: int = MAX_PIXELS,
    concurrency: int = 2,
    wait_s: float = 60.0,
    trusted_hosts: list[str] | None = None,
) -> Flask:
    """The web app around a loaded PixelNN model.

    val: a folder of photos (or of input images, for models trained on paired files) to list; without
    it the page lists inputs from the bank. work: the only folder the app writes to (default: a new
    temporary folder); it keeps the files of the last `keep` results. trusted_hosts: Host names the
    app answers to (None: any; `pixelnn serve` on a loopback address passes LOOPBACK_HOSTS).
    """
    max_pixels = pixel_cap(model.model.cfg.size, max_pixels)
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.request_class = InMemoryRequest
    app.config.update(MAX_CONTENT_LENGTH=int(max_upload_mb * 1024 * 1024), TRUSTED_HOSTS=trusted_hosts)
    app.json.sort_keys = False
    work = Path(work) if work else _temporary_folder()
    store, gate = ResultStore(work, keep), Gate(concurrency, wait_s)
    examples = inputs.Examples(model, Path(val) if val else None)
    app.extensions["pixelnn"] = {"model": model, "store": store, "gate": gate, "examples": examples, "work": work}
    _errors(app, max_upload_mb)
    _guards(app)
    _pages(app, model, examples, max_upload_mb, max_pixels)
    _synthesis(app, model, examples, store, gate, max_pixels)
    _files(app, model, store)
    return app


def _temporary_folder() -> Path:
    """A new temporary work folder, removed when the process exits."""
    folder = Path(tempfile.mkdtemp(prefix="pixelnn-serve-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _errors(app: Flask, max_upload_mb: float) -> None:
    @app.errorhandler(params.RequestError)
    def refused(exc):
        return jsonify(error=_public(str(exc))), exc.status

    @app.errorhandler(PixelNNError)
    def bad_input(exc):  # ConfigError, DataError, BankError: messages meant for the user
        return jsonify(error=_public(str(exc))), 400

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        return jsonify(error=f"the request is larger than the server's limit of {max_upload_mb:g} MB"), 413

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return jsonify(error=f"{exc.name}: {exc.description}"), exc.code

    @app.errorhandler(Exception)
    def crashed(exc):
        log.exception("request failed: %s %s", request.method, request.path)
        return jsonify(error=f"internal error ({type(exc).__name__}); see the server's log"), 500


def _guards(app: Flask) -> None:
    @app.before_request
    def same_origin_posts():
        """Refuse POSTs that another site's page makes (browsers send Origin with them)."""
        origin = request.headers.get("Origin")
        if request.method == "POST" and origin and urlsplit(origin).netloc != request.host:
            raise params.RequestError("cross-origin requests are refused", 403)

    @app.after_request
    def headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'"
        if request.path.startswith("/api/"):
            lasting = response.status_code == 200 and request.path.endswith((".png", ".json", ".npz"))
            response.headers["Cache-Control"] = "private, max-age=3600" if lasting else "no-store"
        return response


def _pages(app: Flask, model, examples: inputs.Examples, max_upload_mb: float, max_pixels: int) -> None:
    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/api/model")
    def model_info():
        bank = model.bank
        return jsonify(
            signal=model.config["signal"],
            input_shape=list(model.input_shape),
            size=model.model.cfg.size,
            bank_size=len(bank),
            labels=params.label_choices(bank.labels),
            photo_inputs=inputs.makes_inputs_from_photos(model),
            drawing="edge map"
            if model.config["signal"] in EDGE_SIGNALS
            else "photo"
            if inputs.makes_inputs_from_photos(model)
            else "input",
            grids=params.GRIDS,
            search=model.search,
            default_grid="paper72" if model.search == "fast" else params.DEFAULT_GRID,  # fast: all 72 in ~0.4 s
            copy_modes=list(COPY_MODES),
            default_copy=DEFAULT_COPY,
            max_upload_mb=max_upload_mb,
            max_megapixels=max_pixels / 1e6,
        )

    @app.get("/api/examples")
    def example_list():
        items = [
            {"index": i, "name": e.name, "kind": e.kind, "thumb": f"/api/examples/{i}/thumb.png"}
            for i, e in enumerate(examples.items)
        ]
        return jsonify(examples=items)

    @app.get("/api/examples/<int:i>/thumb.png")
    def example_thumb(i: int):
        if i >= len(examples.items):
            raise params.RequestError(f"no example {i}", 404)
        return _png(png_bytes(examples.thumbnail(i)))


def _synthesis(app: Flask, model, examples, store: ResultStore, gate: Gate, max_pixels: int) -> None:
    label_choices = params.label_choices(model.bank.labels)
    need = 2 * max(model.model.cfg.size, model.input_shape[0])  # uploads are fitted to these sides

    def read_input(form, files):
        """(x, original photo or None, title) from the request's source."""
        source = params.text(form, "source")
        if source == "example":
            i = examples.find(params.text(form, "example"))
            return (*examples.load(i), examples.items[i].name)
        if source == "bank":
            i = params.integer(params.text(form, "bank_id"), "bank_id", 0, len(model.bank) - 1)
            return model.bank.gather("x", [i])[0], model.bank.gather("y", [i])[0], f"bank #{i}"
        if source == "result":
            entry = store.get(params.text(form, "result") or "")
            return entry.result.input, entry.original, entry.title
        if source in ("upload", "sketch"):
            return read_image_input(source, form, files)
        raise params.RequestError("source must be one of: example, bank, upload, sketch, result")

    def read_image_input(source, form, files):
        data = read_file(files, "image", "uploaded file")
        if data is None:
            raise params.RequestError(f"source={source} needs an image file in the field 'image'")
        image = decode_image(data, "uploaded file", max_pixels, need)
        if source == "sketch":
            return inputs.from_drawing(model, image), None, "drawing"
        kind = params.text(form, "kind", "photo" if inputs.makes_inputs_from_photos(model) else "input")
        if kind == "photo":
            return (*inputs.from_photo(model, image), "uploaded photo")
        if kind == "input":
            return inputs.fit_input(model, image), None, "uploaded input"
        raise params.RequestError("kind must be 'photo' or 'input'")

    def read_request(form, files) -> tuple[SynthesisRequest, dict]:
        """(the request, what the page shows of it)."""
        grid_name, specs = params.grid(form)
        like = read_file(files, "like", "example image")
        like_k = params.like_k(form, len(model.bank))  # checked even when unused
        asked = SynthesisRequest.make(
            grid=specs,
            labels=params.labels(form, label_choices),
            ids=params.ids(form, len(model.bank)),
            like=decode_image(like, "example image", max_pixels, need) if like is not None else None,
            like_k=like_k if like is not None else None,  # the page sends like_k always; it applies with like
            copy=params.copy_mode(form),
            limits=params.LIMITS,
        )
        return asked, {**asked.describe(), "grid": grid_name}  # the grid by the name it was asked by

    @app.post("/api/synthesize")
    def synthesize():
        x, original, title = read_input(request.form, request.files)
        asked, shown = read_request(request.form, request.files)
        with gate.slot():
            t0 = time.monotonic()
            result = model.synthesize(x, asked)
            seconds = time.monotonic() - t0
        rid = store.add(Entry(result, original, title, shown))
        return jsonify(render.result_json(rid, store.get(rid), model.bank, seconds, model.config["signal"]))


def _files(app: Flask, model, store: ResultStore) -> None:
    def candidate(rid: str, i: int):
        cands = store.get(rid).result.candidates
        if i >= len(cands):
            raise params.RequestError(f"no candidate {i}: this result has {len(cands)}", 404)
        return cands[i]

    @app.get("/api/results/<rid>/<any(input, mask, stage1, original):what>.png")
    def result_image(rid: str, what: str):
        entry = store.get(rid)
        if what == "original" and entry.original is None:
            raise params.RequestError("this result has no original photo", 404)
        if what == "mask" and model.config["signal"] != "normals":
            raise params.RequestError("only a normal-map input has a mask", 404)
        return _png(store.file(rid, f"{what}.png", lambda: render.image_png(entry, what)))

    @app.get("/api/results/<rid>/candidates/<int:i>.png")
    def candidate_image(rid: str, i: int):
        cand = candidate(rid, i)
        return _png(store.file(rid, f"cand-{i:03d}.png", lambda: png_bytes(to_uint8(cand.image))))

    @app.get("/api/results/<rid>/candidates/<int:i>/corr.json")
    def candidate_corr_json(rid: str, i: int):
        cand = candidate(rid, i)
        data = store.file(rid, f"cand-{i:03d}.corr.json", lambda: render.corr_json_bytes(cand.corr))
        return _send(data, "application/json", f"cand-{i:03d}.corr.json")

    @app.get("/api/results/<rid>/candidates/<int:i>/corr.npz")
    def candidate_corr_npz(rid: str, i: int):
        cand = candidate(rid, i)
        data = store.file(rid, f"cand-{i:03d}.corr.npz", lambda: render.corr_npz_bytes(cand.corr))
        return _send(data, "application/octet-stream", f"cand-{i:03d}.corr.npz", attachment=True)

    @app.get("/api/results/<rid>/candidates/<int:i>/figure.png")
    def candidate_figure(rid: str, i: int):
        cand = candidate(rid, i)
        return _png(store.file(rid, f"cand-{i:03d}.figure.png", lambda: render.figure_png(cand, model.bank)))

    @app.get("/api/exemplars/<int:i>/<any(photo, input):what>.png")
    def exemplar_image(i: int, what: str):
        if i >= len(model.bank):
            raise params.RequestError(f"no exemplar {i}: the bank has ids 0..{len(model.bank) - 1}", 404)
        image = model.bank.gather("y" if what == "photo" else "x", [i])[0]
        return _png(png_bytes(image))


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~/:])(?:/[^\s/:'\"()]+)+/([^\s/:'\"()]+)")


def _public(message: str) -> str:
    """A message for the client with every absolute server path cut to its last component."""
    return _ABSOLUTE_PATH.sub(r"\1", message)


def _png(data):
    return _send(data, "image/png")


def _send(data, mimetype: str, name: str | None = None, attachment: bool = False):
    """A file of the work folder (a Path the server made) or bytes in memory."""
    if isinstance(data, Path):
        return send_file(data, mimetype=mimetype, as_attachment=attachment, download_name=name, max_age=3600)
    return send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=attachment, download_name=name)

"""Running the app under waitress (a production WSGI server) with request bodies kept in memory."""

from __future__ import annotations

import logging
import signal
import tempfile
from pathlib import Path

from flask import Flask

MB = 1024 * 1024


def make_server(app: Flask, host: str = "127.0.0.1", port: int = 8000, threads: int = 6):
    """A waitress server for `app` (not yet running); port 0 picks a free port (see .effective_port).

    Bodies up to the app's upload limit are buffered in memory, not in temporary files; larger ones
    are refused by waitress before they reach the app.
    """
    from waitress import create_server

    body = app.config["MAX_CONTENT_LENGTH"] + MB  # room for the form around the largest upload
    return create_server(
        app,
        host=host,
        port=port,
        threads=max(threads, 2),
        max_request_body_size=body,
        inbuf_overflow=body,
        outbuf_overflow=32 * MB,
        channel_timeout=120,
        ident="pixelnn",
    )


def url(server) -> str:
    host = server.effective_host
    return f"http://{'[' + host + ']' if ':' in host else host}:{server.effective_port}/"


def serve_forever(app: Flask, host: str, port: int, threads: int, work: Path) -> None:
    """Serve until Ctrl-C, printing the URL; any temporary file a library makes goes to `work`."""
    tempfile.tempdir = str(work)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # a page loads many images at once
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it like Ctrl-C: results are cleaned up
    server = make_server(app, host, port, threads)
    print(f"PixelNN web app: {url(server)}  (results in {work}; Ctrl-C stops)", flush=True)
    try:
        server.run()
    finally:
        server.close()
        app.extensions["pixelnn"]["store"].clear()


def _interrupt(signum, frame):
    raise KeyboardInterrupt

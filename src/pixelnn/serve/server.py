"""Running the app under waitress (a production WSGI server) with request bodies kept in memory."""

from __future__ import annotations

import json
import logging
import signal
import tempfile
from pathlib import Path

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from ..errors import ConfigError

log = logging.getLogger(__name__)

MB = 1024 * 1024
IDLE_TIMEOUT_S = 10  # a connection silent this long (idle keep-alive, half-sent request) is closed
CLEANUP_S = 2  # how often waitress looks for such connections
CONNECTIONS = 500  # open connections at once; more wait in the listen backlog


def make_server(
    app: Flask,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 6,
    *,
    idle_timeout_s: int = IDLE_TIMEOUT_S,
    connections: int = CONNECTIONS,
):
    """A waitress server for `app` (not yet running); port 0 picks a free port (see .effective_port).

    Bodies up to the app's upload limit are buffered in memory, not in temporary files; larger ones
    are refused by waitress before they reach the app. Idle connections are closed after
    `idle_timeout_s`, so a crowd of silent sockets cannot hold every connection slot for long.
    """
    from waitress import create_server

    body = app.config["MAX_CONTENT_LENGTH"] + MB  # room for the form around the largest upload
    server = create_server(
        app,
        host=host,
        port=port,
        threads=max(threads, 2),
        max_request_body_size=body,
        inbuf_overflow=body,
        outbuf_overflow=32 * MB,
        channel_timeout=idle_timeout_s,
        cleanup_interval=min(CLEANUP_S, idle_timeout_s),
        connection_limit=connections,
        ident="pixelnn",
    )
    _json_errors(server)
    return server


class JsonErrorTask(ErrorTask):
    """Waitress's own refusals (a body over the limit, a malformed request) as JSON, like the app's."""

    def execute(self):
        e = self.request.error
        body = json.dumps({"error": f"{e.reason}: {e.body}".rstrip(": ")}).encode()
        self.status = f"{e.code} {e.reason}"
        self.response_headers.extend([("Content-Type", "application/json"), ("Connection", "close")])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def _json_errors(server) -> None:
    """Every listening socket of `server` answers waitress's errors with JsonErrorTask."""
    for s in [server, *getattr(server, "map", {}).values()]:
        if hasattr(s, "channel_class"):
            s.channel_class = JsonErrorChannel


def url(server) -> str:
    host = server.effective_host
    return f"http://{'[' + host + ']' if ':' in host else host}:{server.effective_port}/"


def serve_forever(app: Flask, host: str, port: int, threads: int, work: Path) -> None:
    """Serve until Ctrl-C, logging the URL; any temporary file a library makes goes to `work`."""
    tempfile.tempdir = str(work)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # a page loads many images at once
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it like Ctrl-C: results are cleaned up
    server = _listening(app, host, port, threads)
    log.info("PixelNN web app: %s  (results in %s; Ctrl-C stops)", url(server), work)
    try:
        server.run()
    finally:
        server.close()
        app.extensions["pixelnn"]["store"].clear()


def _listening(app: Flask, host: str, port: int, threads: int):
    """make_server, with an address it cannot listen on (in use, unknown host) as a ConfigError."""
    try:
        return make_server(app, host, port, threads)
    except (OSError, ValueError) as exc:  # waitress: ValueError 'Invalid host/port specified.'
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot listen on {host} port {port}: {reason}") from None


def _interrupt(signum, frame):
    raise KeyboardInterrupt

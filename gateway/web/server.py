"""A small read-only HTTP server in a thread of its own: ``/`` (the status page), ``/api/status``,
``/api/nodes``, ``/api/packets`` and ``/metrics``.

It reads only snapshots the core thread publishes (gateway.sinks.monitor, the stats snapshot), so a slow
or hostile client can never stall the pipeline. Bound to loopback by default; anywhere else a token is
required (``Authorization: Bearer <token>`` or ``?token=``), compared in constant time.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gateway.errors import ConfigError
from gateway.web import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebSources:
    """Where the endpoints read from (each a callable returning a JSON-ready value)."""

    status: Callable[[], dict[str, Any]]
    nodes: Callable[[], Any]
    packets: Callable[[], Any]
    stats: Callable[[], dict[str, Any]]


def page() -> bytes:
    return resources.files("gateway.web").joinpath("static", "index.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "lora-gw"
    sys_version = ""
    timeout = 10  # an idle or slow client loses its connection (and its thread) after 10 s

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s: " + format, self.address_string(), *args)

    def _authorised(self, query: dict[str, list[str]]) -> bool:
        token = self.server.token
        if not token:
            return True
        given = self.headers.get("Authorization", "")
        given = given[7:] if given.startswith("Bearer ") else (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), token.encode())

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if not self._authorised(parse_qs(url.query)):
            self._send(401, b'{"error": "token required"}\n', "application/json")
            return
        src = self.server.sources
        routes: dict[str, Callable[[], tuple[bytes, str]]] = {
            "/": lambda: (self.server.page, "text/html; charset=utf-8"),
            "/index.html": lambda: (self.server.page, "text/html; charset=utf-8"),
            "/api/status": lambda: (_json(src.status()), "application/json"),
            "/api/nodes": lambda: (_json(src.nodes()), "application/json"),
            "/api/packets": lambda: (_json(src.packets()), "application/json"),
            "/metrics": lambda: (metrics.render(src.stats), metrics.CONTENT_TYPE),
        }
        route = routes.get(url.path)
        if route is None:
            self._send(404, b'{"error": "not found"}\n', "application/json")
            return
        try:
            body, ctype = route()
        except Exception as exc:  # one failing endpoint must not take the listener down
            log.warning("http %s: %s: %s", url.path, type(exc).__name__, exc)
            self._send(500, b'{"error": "internal error"}\n', "application/json")
            return
        self._send(200, body, ctype)

    do_HEAD = do_GET

    def _read_only(self) -> None:
        self._send(405, b'{"error": "read-only"}\n', "application/json")

    do_POST = do_PUT = do_DELETE = do_PATCH = _read_only


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sources: WebSources
    token: str | None
    page: bytes


class _Server6(_Server):
    address_family = socket.AF_INET6


class WebServer:
    def __init__(self, listen: tuple[str, int], sources: WebSources, token: str | None = None) -> None:
        self.listen = listen
        self.sources = sources
        self.token = token
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server is not None else self.listen[1]

    def start(self) -> None:
        host, port = self.listen
        try:
            server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(f"http.listen: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        server.sources, server.token, server.page = self.sources, self.token, page()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.1,), name="http", daemon=True)
        self._thread.start()
        log.info("http: status page and /metrics on http://%s:%d/", host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

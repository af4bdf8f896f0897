"""A real HTTP server on 127.0.0.1 for provider tests, answering from a script the test writes.

    with LocalHttpServer({"/api": lambda req: Reply(200, {"ok": True})}) as server:
        server.url("/api")          # http://127.0.0.1:<port>/api
        server.requests             # what arrived: method, path, query, headers, body

A handler may block on `server.release` (an Event set when the server stops) to play a server
that never answers, without leaving a thread behind after the test.
"""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None
    """bytes or str are sent as they are; anything else as JSON."""
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Reply]


def _listen_ports() -> range:
    """Ports below the kernel's ephemeral range, and below the few kwokctl takes under 32768."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = min(low, 32768) - 1000
    return range(max(1024, top - 15000), top)


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, for a server a test is about to start.

    Not one the kernel hands out for port 0: that is an ephemeral port, and any outgoing
    connection (the operator's own, to the API server) may take it before the server meant to
    listen on it binds — an operator's health port was lost that way in CI. Below the ephemeral
    range only listeners take ports, and this process never hands the same one out twice.
    """
    ports = _listen_ports()
    for _ in range(500):
        port = random.choice(ports)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port in {ports}")


class LocalHttpServer:
    def __init__(self, routes: Mapping[str, Handler]) -> None:
        self.routes = dict(routes)
        self.requests: list[Request] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = parse_qs(parts.query)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=query,
                    headers=dict(self.headers.items()),
                    body=body,
                )
                with outer._lock:
                    outer.requests.append(request)
                handler = outer.routes.get(parts.path)
                reply = handler(request) if handler else Reply(404, {"error": "no route"})
                payload = reply.body
                if isinstance(payload, str):
                    data = payload.encode()
                    content_type = "text/plain; charset=utf-8"
                elif isinstance(payload, bytes):
                    data = payload
                    content_type = "application/octet-stream"
                else:
                    data = json.dumps(payload).encode()
                    content_type = "application/json"
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first, which is what some tests want

            do_GET = _serve
            do_POST = _serve
            do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(r.path == path for r in self.requests)

    def start(self) -> LocalHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LocalHttpServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

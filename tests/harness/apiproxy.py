"""A fault-injecting reverse proxy in front of the real kube-apiserver.

The operator under test talks to the proxy (plain HTTP on 127.0.0.1, a kubeconfig written by
`ApiProxy.kubeconfig`); the proxy talks TLS to the API server with the admin's client
certificate. Each request may be answered with a fault instead of (or besides) the real answer,
at rates chosen per kind:

- `error`     500/503 before the request reaches the server (nothing happened),
- `lost`      the request is forwarded and done, then answered with 504 (the answer was lost:
              the caller cannot know it succeeded, the ambiguity real timeouts leave),
- `throttle`  429 with Retry-After, before the request reaches the server,
- `conflict`  409 Conflict on writes (POST/PUT/PATCH/DELETE), as an optimistic-lock loss,
- `slow`      the real answer, late (up to `slow_max` seconds),
- `cut`       a watch stream forwarded for a random while, then its connection dropped
              mid-stream (no closing chunk), as a load balancer or a restart does.

aiohttp (already a dependency, via kopf and the web provider) is both the server and the
upstream client. The proxy runs in its own thread with its own event loop, so a synchronous
test drives it; `counts` says how many faults of each kind were injected.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from harness.local_http import free_port

KINDS = ("error", "lost", "throttle", "conflict", "slow", "cut")
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Hop-by-hop headers and what the proxy sets itself are not relayed.
DROP = frozenset(
    {
        "host",
        "authorization",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "content-encoding",
        "accept-encoding",
    }
)


@dataclass
class FaultRates:
    """Probability of each fault per request (of the requests it applies to)."""

    error: float = 0.0
    lost: float = 0.0
    throttle: float = 0.0
    conflict: float = 0.0  # of writes
    slow: float = 0.0
    cut: float = 0.0  # of watch requests
    retry_after: int = 1  # seconds, in the 429's header
    slow_max: float = 1.5  # seconds
    cut_after_max: float = 3.0  # seconds a cut watch lives at most

    @classmethod
    def scaled(cls, total: float) -> FaultRates:
        """About `total` of all requests faulted, spread over every kind."""
        return cls(
            error=total * 0.25,
            lost=total * 0.1,
            throttle=total * 0.25,
            conflict=total * 0.3,
            slow=total * 0.15,
            cut=min(0.9, total * 1.5),
        )

    @property
    def quiet(self) -> bool:
        return not any((self.error, self.lost, self.throttle, self.conflict, self.slow, self.cut))


def status_body(code: int, reason: str, message: str) -> bytes:
    """A metav1.Status, as the API server answers errors."""
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"injected by the chaos proxy: {message}",
            "reason": reason,
            "code": code,
        }
    ).encode()


@dataclass
class Upstream:
    server: str
    ssl: ssl.SSLContext | bool

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Upstream:
        """The admin's API server URL and TLS identity (files or inline data, both kinds)."""
        config = yaml.safe_load(path.read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
        user = next(u for u in config["users"] if u["name"] == context["context"]["user"])
        entry, creds = cluster["cluster"], user["user"]
        server = str(entry["server"]).rstrip("/")
        if not server.startswith("https"):
            return cls(server, False)
        scratch = Path(tempfile.mkdtemp(prefix="apiproxy-"))

        def material(key: str) -> str | None:
            if entry.get(key) or creds.get(key):
                return str(entry.get(key) or creds.get(key))
            data = entry.get(f"{key}-data") or creds.get(f"{key}-data")
            if data is None:
                return None
            import base64

            target = scratch / key
            target.write_bytes(base64.b64decode(data))
            return str(target)

        context_ssl = ssl.create_default_context(cafile=material("certificate-authority"))
        if entry.get("insecure-skip-tls-verify"):
            context_ssl.check_hostname = False
            context_ssl.verify_mode = ssl.CERT_NONE
        cert, key = material("client-certificate"), material("client-key")
        if cert and key:
            context_ssl.load_cert_chain(cert, key)
        return cls(server, context_ssl)


@dataclass
class ApiProxy:
    upstream_kubeconfig: Path
    rates: FaultRates = field(default_factory=FaultRates)
    seed: int | None = None
    port: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    requests: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._upstream = Upstream.from_kubeconfig(self.upstream_kubeconfig)
        self.enabled = True

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> ApiProxy:
        self.port = self.port or free_port()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as err:  # surfaced to start()'s caller
                failure.append(err)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="apiproxy", daemon=True)
        self._thread.start()
        ready.wait(timeout=30)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=15)
            self._loop = None

    def __enter__(self) -> ApiProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig naming the proxy. The token is a placeholder: the proxy drops it and
        authenticates upstream as the admin."""
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
                    "users": [{"name": "chaos", "user": {"token": "chaos-proxy"}}],
                    "contexts": [
                        {"name": "proxy", "context": {"cluster": "proxy", "user": "chaos"}}
                    ],
                    "current-context": "proxy",
                }
            )
        )
        return path

    @property
    def faults(self) -> int:
        return sum(self.counts.values())

    # --- serving ------------------------------------------------------------------------------

    async def _serve(self) -> None:
        self._session = ClientSession(
            connector=TCPConnector(ssl=self._upstream.ssl, limit=200),
            timeout=ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _pick(self, method: str, watch: bool) -> str | None:
        """The fault for one request, or None. One draw per kind, in a fixed order."""
        r = self.rates
        with self._lock:
            self.requests += 1
            if not self.enabled:
                return None
            rng = self._rng
            if watch:
                return "cut" if rng.random() < r.cut else None
            if rng.random() < r.throttle:
                return "throttle"
            if rng.random() < r.error:
                return "error"
            if method in WRITES and rng.random() < r.conflict:
                return "conflict"
            if method in WRITES and rng.random() < r.lost:
                return "lost"
            if rng.random() < r.slow:
                return "slow"
            return None

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        watch = request.query.get("watch", "").lower() in ("1", "true")
        fault = self._pick(request.method, watch)
        if fault == "throttle":
            self._count(fault)
            return web.Response(
                status=429,
                body=status_body(429, "TooManyRequests", "slow down"),
                content_type="application/json",
                headers={"Retry-After": str(self.rates.retry_after)},
            )
        if fault == "error":
            self._count(fault)
            code = self._rng.choice((500, 503))
            return web.Response(
                status=code,
                body=status_body(code, "InternalError", "the server failed"),
                content_type="application/json",
            )
        if fault == "conflict":
            self._count(fault)
            return web.Response(
                status=409,
                body=status_body(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled: the object has been modified; "
                    "please apply your changes to the latest version and try again",
                ),
                content_type="application/json",
            )
        if fault == "slow":
            self._count(fault)
            await asyncio.sleep(self._rng.uniform(0.2, self.rates.slow_max))
        return await self._forward(request, fault, watch)

    async def _forward(
        self, request: web.Request, fault: str | None, watch: bool
    ) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP}
        # Plain bodies only: a gzip answer relayed without decompressing reached the client
        # with no Content-Encoding it would honour (kopf failed to parse a list as JSON).
        headers = {k: v for k, v in headers.items() if k.lower() != "accept-encoding"}
        headers["Accept-Encoding"] = "identity"
        body = await request.read()
        url = f"{self._upstream.server}{request.rel_url}"
        try:
            upstream = await self._session.request(
                request.method, url, headers=headers, data=body or None, allow_redirects=False
            )
        except Exception as err:  # the API server itself is unreachable: say so, as a 502
            return web.Response(
                status=502,
                body=status_body(502, "ServiceUnavailable", f"upstream: {err!r}"),
                content_type="application/json",
            )
        async with upstream:
            relay = {k: v for k, v in upstream.headers.items() if k.lower() not in DROP}
            if fault == "lost":
                await upstream.read()  # done upstream; the answer goes nowhere
                self._count(fault)
                return web.Response(
                    status=504,
                    body=status_body(504, "Timeout", "the answer was lost"),
                    content_type="application/json",
                )
            if not watch or upstream.status != 200:
                return web.Response(
                    status=upstream.status, body=await upstream.read(), headers=relay
                )
            response = web.StreamResponse(status=upstream.status, headers=relay)
            response.enable_chunked_encoding()
            await response.prepare(request)
            deadline = None
            if fault == "cut":
                loop = asyncio.get_running_loop()
                deadline = loop.time() + self._rng.uniform(0.1, self.rates.cut_after_max)
            try:
                while True:
                    timeout = (
                        None if deadline is None else deadline - asyncio.get_running_loop().time()
                    )
                    if timeout is not None and timeout <= 0:
                        break
                    try:
                        chunk = await asyncio.wait_for(upstream.content.readany(), timeout)
                    except TimeoutError:
                        break
                    if not chunk:
                        await response.write_eof()
                        return response
                    await response.write(chunk)
            except (ConnectionResetError, asyncio.CancelledError):
                raise
            # Cut: drop the connection with the stream unfinished (no terminating chunk).
            self._count("cut")
            if request.transport is not None:
                request.transport.close()
            return response


def summary(counts: dict[str, int]) -> dict[str, Any]:
    return {kind: counts.get(kind, 0) for kind in KINDS}

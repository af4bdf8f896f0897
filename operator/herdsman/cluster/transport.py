"""The operator's HTTP transport to the API server: asyncio (aiohttp), not threads.

Why: the official client is synchronous, and the operator ran every call in a pool of threads
— a thread per call in flight, the GIL handed between them, and a queue in front of the pool.
aiohttp (Kopf's own HTTP client, so no new dependency) keeps every call on the event loop, on
a pool of kept-alive connections. Credentials still come from the official client's
`Configuration` (kubeconfig or in-cluster service account, exec plugins, token refresh), so
the operator authenticates exactly as kubectl and the kubectl plugin do.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncGenerator
from typing import Any, Protocol

import aiohttp


class Credentials(Protocol):
    """What the transport reads of the official client's `Configuration` (the one module that
    imports that client, kube.py, builds it; see test_chart_rbac)."""

    host: str
    ssl_ca_cert: str | None
    ca_cert_data: str | bytes | None
    cert_file: str | None
    key_file: str | None
    verify_ssl: bool
    assert_hostname: bool | str | None
    username: str | None
    password: str | None

    @property
    def proxy(self) -> str | None: ...

    def get_api_key_with_prefix(self, identifier: str, alias: str | None = None) -> str | None: ...


class AsyncTransport:
    """One aiohttp session per event loop, at most `connections` connections to the server.

    The session is made on the first call (it must belong to the running loop); a call from
    another loop (a test's `asyncio.run`) gets a session of its own.
    """

    def __init__(self, configuration: Credentials, connections: int) -> None:
        self.configuration = configuration
        self.connections = max(1, connections)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def ssl_context(self) -> ssl.SSLContext:
        cfg = self.configuration
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
        if cfg.ca_cert_data:
            data = cfg.ca_cert_data
            context.load_verify_locations(cadata=data if isinstance(data, str) else data.decode())
        if cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file or None)
        if not cfg.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif cfg.assert_hostname is False:
            context.check_hostname = False
        return context

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self.connections, ssl=self.ssl_context(), enable_cleanup_closed=True
            )
            # No session-wide timeout: every call brings its own, from its deadline.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )
            self._loop = loop
        return self._session

    def headers(self, content_type: str) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        # This runs the configuration's refresh hook (a rotated service-account token, an exec
        # plugin's expiring credential) before it names the token, as the official client does.
        token = self.configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = str(token)
        if self.configuration.username and self.configuration.password:
            auth = aiohttp.BasicAuth(self.configuration.username, self.configuration.password)
            headers["Authorization"] = auth.encode()
        return headers

    def _send(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        data: bytes | None,
        content_type: str,
        timeout: aiohttp.ClientTimeout,
    ) -> Any:
        """One request to the API server with our credentials (the response's context)."""
        return self.session().request(
            method,
            self.configuration.host.rstrip("/") + path,
            params=query,
            data=data,
            headers=self.headers(content_type),
            timeout=timeout,
            proxy=self.configuration.proxy or None,
        )

    async def call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Any,
        content_type: str,
        seconds: float,
    ) -> tuple[int, str, bytes, dict[str, str]]:
        """(status, reason, body bytes, headers) of one request given `seconds` in all (connect,
        send, answer); raises TimeoutError or ConnectionError on transport failures, which the
        retry layer knows how to treat."""
        data = None if body is None else json.dumps(body).encode()
        try:
            async with self._send(
                method, path, query, data, content_type, aiohttp.ClientTimeout(total=seconds)
            ) as response:
                payload = await response.read()
                return response.status, response.reason or "", payload, dict(response.headers)
        except TimeoutError as exc:
            raise TimeoutError(f"{method} {path}: no answer within {seconds:.2f}s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionError(f"{method} {path}: {exc}") from exc

    async def lines(
        self, path: str, query: dict[str, str], read_seconds: float
    ) -> AsyncGenerator[bytes, None]:
        """A watch: the response's lines as they come, until the server ends it. Raises
        TimeoutError when nothing (not even a bookmark) arrives for `read_seconds`, and
        ConnectionError for a refused request or a broken connection."""
        timeout = aiohttp.ClientTimeout(total=None, connect=30.0, sock_read=read_seconds)
        try:
            async with self._send(
                "GET", path, query, None, "application/json", timeout
            ) as response:
                if response.status == 410:
                    # A watch from a compacted version: said as the watch itself would say it.
                    yield b'{"type": "ERROR", "object": {"code": 410}}'
                    return
                if response.status >= 400:
                    text = (await response.read())[:200].decode(errors="replace")
                    raise ConnectionError(f"watch {path}: {response.status} {text}")
                # Split by hand: aiohttp's line reader refuses lines over 128 KiB, and one
                # Rollout with a large template can be that long.
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    *complete, buffer = buffer.split(b"\n")
                    for line in complete:
                        yield line
                if buffer.strip():
                    yield buffer
        except TimeoutError as exc:
            raise TimeoutError(f"watch {path}: silent for {read_seconds:.0f}s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionError(f"watch {path}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

"""The asyncio transport under `Kube`, against a real HTTP server on localhost (aiohttp's).

What it must keep from the threaded client it replaced: the configuration's credentials on
every request, the API server's Status message in errors, retries on 5xx and 429 (after the
server's Retry-After) and on timeouts, and deadlines that count from the moment a call is sent,
not while it waits for a free connection.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client

from herdsman.cluster.budget import AccessPolicy
from herdsman.cluster.kube import Kube, KubeError, resource_of
from herdsman.cluster.retry import GaveUp

pytestmark = pytest.mark.unit

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def kube_for(host: str, policy: AccessPolicy, *, workers: int = 4, token: str = "") -> Kube:
    configuration = client.Configuration(host=host)
    if token:
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    return Kube(client.ApiClient(configuration), policy, workers=workers)


def status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "status": "Failure", "reason": reason, "message": message}
    return web.json_response(body, status=code)


def test_a_call_carries_the_token_query_and_body_and_decodes_the_answer() -> None:
    seen: list[dict[str, Any]] = []
    counted: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "auth": request.headers.get("Authorization"),
                "type": request.headers.get("Content-Type"),
                "body": await request.json() if request.can_read_body else None,
            }
        )
        return web.json_response({"kind": "ReplicaSet", "metadata": {"name": "web-v002"}})

    async def run() -> tuple[Any, Any]:
        async with server(handler) as host:
            kube = kube_for(host, AccessPolicy(), token="s3cret")
            kube._on_request = lambda verb, resource: counted.append((verb, resource))
            deadline = AccessPolicy().reconcile_deadline()
            listed = await kube.list("/apis/apps/v1/replicasets", deadline=deadline, labels="a=b")
            patched = await kube.patch(
                "/apis/apps/v1/x", {"spec": {"replicas": 2}}, deadline=deadline
            )
            await kube.close()
            return listed, patched

    listed, patched = asyncio.run(run())
    assert listed == []  # the answer has no items
    assert patched["metadata"]["name"] == "web-v002"
    assert seen[0] == {
        "method": "GET",
        "path": "/apis/apps/v1/replicasets",
        "query": {"labelSelector": "a=b"},
        "auth": "Bearer s3cret",
        "type": "application/json",
        "body": None,
    }
    assert seen[1]["method"] == "PATCH"
    assert seen[1]["type"] == "application/merge-patch+json"
    assert seen[1]["body"] == {"spec": {"replicas": 2}}
    assert counted == [("GET", "replicasets"), ("PATCH", "x")]


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/apis/apps/v1/namespaces/shop/replicasets/web-v002/scale", "replicasets/scale"),
        ("/apis/apps/v1/namespaces/shop/replicasets", "replicasets"),
        ("/apis/apps/v1/replicasets?labelSelector=a", "replicasets"),
        ("/api/v1/namespaces/shop/events", "events"),
        ("/api/v1/namespaces/shop/services/web", "services"),
        ("/api/v1/namespaces/shop", "namespaces"),
        ("/apis/argoproj.io/v1alpha1/namespaces/a/rollouts/web/status", "rollouts/status"),
        ("/apis/coordination.k8s.io/v1/namespaces/a/leases/shard-0", "leases"),
        ("/api/v1", "unknown"),
    ],
)
def test_the_resource_of_a_path_labels_the_request_metric(path: str, resource: str) -> None:
    assert resource_of(path) == resource


def test_errors_name_the_servers_message_and_4xx_is_not_retried() -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if request.path.endswith("gone"):
            return status(404, "NotFound", 'replicasets "gone" not found')
        return status(409, "Conflict", "the object has been modified")

    async def run() -> tuple[Any, KubeError]:
        async with server(handler) as host:
            kube = kube_for(host, AccessPolicy())
            deadline = AccessPolicy().reconcile_deadline()
            missing = await kube.get("/apis/apps/v1/replicasets/gone", deadline=deadline)
            with pytest.raises(KubeError) as conflict:
                await kube.patch("/apis/apps/v1/replicasets/x", {}, deadline=deadline)
            await kube.close()
            return missing, conflict.value

    missing, conflict = asyncio.run(run())
    assert missing is None  # a 404 on GET is "not there"
    assert conflict.conflict
    assert "has been modified" in str(conflict)
    assert calls == 2  # neither was retried


def test_overload_is_retried_after_the_servers_retry_after() -> None:
    answers = [status(429, "TooManyRequests", "slow down"), status(503, "ServiceUnavailable", "")]
    answers[0].headers["Retry-After"] = "1"
    sent: list[float] = []

    async def handler(_: web.Request) -> web.Response:
        sent.append(time.monotonic())
        return answers.pop(0) if answers else web.json_response({"kind": "Pod"})

    async def run() -> Any:
        async with server(handler) as host:
            policy = AccessPolicy(reconcile_budget=5.0, call_timeout=2.0, attempts=4)
            kube = kube_for(host, policy)
            got = await kube.get("/api/v1/pods/p", deadline=policy.reconcile_deadline())
            await kube.close()
            return got

    assert asyncio.run(run()) == {"kind": "Pod"}
    assert len(sent) == 3
    assert sent[1] - sent[0] >= 0.95  # the 429's Retry-After was honoured


def test_a_server_that_never_answers_times_out_and_the_call_gives_up() -> None:
    async def handler(_: web.Request) -> web.Response:
        await asyncio.sleep(1.0)  # longer than the whole budget
        return web.json_response({})

    async def run() -> float:
        async with server(handler) as host:
            policy = AccessPolicy(reconcile_budget=0.6, call_timeout=0.2, attempts=3)
            kube = kube_for(host, policy)
            started = time.monotonic()
            with pytest.raises(GaveUp):
                await kube.get("/api/v1/pods/p", deadline=policy.reconcile_deadline())
            took = time.monotonic() - started
            await kube.close()
            return took

    assert asyncio.run(run()) < 1.5


def test_waiting_for_a_free_connection_does_not_spend_the_calls_deadline() -> None:
    """One connection, a server taking 0.3 s, five calls with 0.5 s each: the last one is sent
    1.2 s after it was made, and still succeeds, because its deadline starts when it is sent."""
    in_flight = 0
    most = 0

    async def handler(_: web.Request) -> web.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.3)
        in_flight -= 1
        return web.Response(body=json.dumps({"kind": "Pod"}), content_type="application/json")

    async def run() -> list[Any]:
        async with server(handler) as host:
            policy = AccessPolicy(reconcile_budget=0.5, call_timeout=0.5, attempts=1)
            kube = kube_for(host, policy, workers=1)
            calls = [
                kube.get("/api/v1/pods/p", deadline=policy.reconcile_deadline()) for _ in range(5)
            ]
            got = await asyncio.gather(*calls)
            await kube.close()
            return got

    started = time.monotonic()
    assert asyncio.run(run()) == [{"kind": "Pod"}] * 5
    assert time.monotonic() - started >= 1.4
    assert most == 1  # one connection, one call in flight at a time

"""The chart's RBAC is enough: the operator runs a canary end to end on its ServiceAccount token.

KWOK runs no containers, so the chart's pods cannot prove it. Instead the test installs the chart
limited to the test's namespace, asks the TokenRequest API for a token of the chart's
ServiceAccount (`kubectl create token`), and runs the operator process here with a kubeconfig
holding only that token — no admin credentials anywhere. Its requests go through a recording
proxy on 127.0.0.1 that forwards them unchanged (the API server authenticates and authorises
the token) and notes each one. The rollout then exercises every kind of call: Kopf's watches and
peering, server groups, Services, analysis from a namespaced and a cluster template with a
header read from a Secret, a restart (pods), promotion, and Events.

Passing means: the rollout finished, the API server refused nothing, and every (verb, resource)
the operator issued is granted by the installed Role or ClusterRole.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from harness.cluster import CHART, Cluster, token_kubeconfig
from harness.local_http import LocalHttpServer, Reply, free_port
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, Rollouts, rollout
from herdsman.cli import actions
from herdsman.cluster.kube import ANALYSIS_TEMPLATES, CLUSTER_ANALYSIS_TEMPLATES, SECRETS

pytestmark = pytest.mark.e2e

Perm = tuple[str, str, str]
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
}  # fmt: skip


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    watch: bool
    status: int


class RecordingProxy:
    """Plain HTTP on 127.0.0.1 in front of the API server: forwards every request as it came
    (the client's bearer token included; the proxy has no credentials of its own), streams the
    answer back (watches too), and records (method, path, watch, status)."""

    def __init__(self, upstream: str, ca: ssl.SSLContext) -> None:
        self.upstream = upstream.rstrip("/")
        self.ssl = ca
        self.requests: list[Request] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> RecordingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body or None,
            ssl=self.ssl,
            timeout=aiohttp.ClientTimeout(total=None),
        ) as answer:
            self.requests.append(
                Request(
                    request.method,
                    request.path,
                    request.query.get("watch") in ("true", "1"),
                    answer.status,
                )
            )
            response = web.StreamResponse(
                status=answer.status,
                headers={k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP},
            )
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    def stop(self) -> None:
        async def _stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._session is not None:
                await self._session.close()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def perm_of(request: Request) -> tuple[str | None, Perm] | None:
    """(namespace, (apiGroup, resource[/sub], verb)) the way the API server reads a path."""
    parts = request.path.strip("/").split("/")
    if parts[0] == "api" and len(parts) > 2:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        return None  # discovery: /api, /apis, /version ... (open to every authenticated user)
    namespace = None
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource += "/" + rest[2]
    verb = {"POST": "create", "PATCH": "patch", "PUT": "update"}.get(request.method)
    if request.method == "GET":
        verb = "get" if name else ("watch" if request.watch else "list")
    elif request.method == "DELETE":
        verb = "delete" if name else "deletecollection"
    assert verb is not None, request
    return namespace, (group, resource, verb)


def granted(role: dict[str, Any]) -> set[Perm]:
    return {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def ca_context(kubeconfig: Path) -> tuple[str, ssl.SSLContext]:
    """The API server's URL and a TLS context trusting its CA — and no client certificate."""
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    cfg = cluster["cluster"]
    if "certificate-authority-data" in cfg:
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(cfg["certificate-authority-data"]).decode()
        )
    else:
        ctx = ssl.create_default_context(cafile=cfg["certificate-authority"])
    return cfg["server"], ctx


@pytest.fixture
def install(cluster: Cluster, namespace: str) -> Iterator[tuple[str, str]]:
    """The chart, released into its own namespace, watching only the test's namespace."""
    suffix = secrets.token_hex(3)
    # A release name holding "herdsman" is the objects' name too (the chart's fullname rule).
    release, operator_ns = f"herdsman-{suffix}", f"herdsman-rbac-{suffix}"
    cluster.helm(
        "install", release, str(CHART), "-n", operator_ns, "--create-namespace",
        "--set", f"watchNamespaces={{{namespace}}}", "--set", "image.repository=herdsman",
        "--wait", "--timeout", "90s",
    )  # fmt: skip
    yield release, operator_ns
    cluster.helm("uninstall", release, "-n", operator_ns, "--wait", check=False)
    cluster.kubectl("delete", "namespace", operator_ns, "--ignore-not-found", "--wait=false")


@pytest.fixture
def cluster_template(cluster: Cluster) -> Iterator[str]:
    name = f"rbac-health-{secrets.token_hex(3)}"
    yield name
    cluster.rest.delete(CLUSTER_ANALYSIS_TEMPLATES.url(None, name))


def web_metric(name: str, url: str, **provider: Any) -> dict[str, Any]:
    return {
        "name": name,
        "interval": "1s",
        "count": 2,
        "successCondition": "result == true",
        "provider": {"web": {"url": url, "jsonPath": "{$.healthy}", **provider}},
    }


def test_the_operator_runs_a_canary_on_the_charts_service_account_alone(
    cluster: Cluster,
    namespace: str,
    rollouts: Rollouts,
    install: tuple[str, str],
    cluster_template: str,
    tmp_path: Path,
) -> None:
    release, operator_ns = install
    token = cluster.kubectl("create", "token", release, "-n", operator_ns, "--duration=1h").strip()
    upstream, ca = ca_context(cluster.kubeconfig)
    proxy = RecordingProxy(upstream, ca).start()
    kubeconfig = token_kubeconfig(
        cluster, token, tmp_path / "service-account.kubeconfig", server=proxy.url
    )
    health = LocalHttpServer({"/health": lambda _: Reply(200, {"healthy": True})}).start()
    operator = OperatorProcess(
        cluster=cluster,
        namespaces=[namespace],
        log_path=tmp_path / "operator.log",
        standalone=False,
        # The web dashboard on too: its watches (Rollouts, AnalysisRuns, Events) are the
        # operator's reads, and must be granted like any other.
        extra_args=[
            "--require-peering",
            f"--peering={release}",
            f"--dashboard-port={free_port()}",
            "--dashboard-address=127.0.0.1",
        ],
        env={"KUBECONFIG": str(kubeconfig)},
    )
    try:
        # Analysis from a namespaced template whose header comes from a Secret, and from a
        # cluster template in the background.
        rollouts.rest.create(
            SECRETS.url(namespace),
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "probe"},
                "stringData": {"token": "s3cret"},
            },
        )
        header = {
            "key": "X-Token",
            "valueFrom": {"secretKeyRef": {"name": "probe", "key": "token"}},
        }
        rollouts.rest.create(
            ANALYSIS_TEMPLATES.url(namespace),
            {
                "apiVersion": "herdsman.dev/v1alpha1",
                "kind": "AnalysisTemplate",
                "metadata": {"name": "probe"},
                "spec": {"metrics": [web_metric("probe", health.url("/health"), headers=[header])]},
            },
        )
        rollouts.rest.create(
            CLUSTER_ANALYSIS_TEMPLATES.url(),
            {
                "apiVersion": "herdsman.dev/v1alpha1",
                "kind": "ClusterAnalysisTemplate",
                "metadata": {"name": cluster_template},
                "spec": {"metrics": [web_metric("up", health.url("/health"))]},
            },
        )
        operator.start()
        rollouts.create(
            rollout(
                replicas=4,
                steps=[
                    {"setWeight": 25},
                    {"analysis": {"templates": [{"templateName": "probe"}]}},
                    {"setWeight": 50},
                    {"pause": {}},
                ],
                analysis={"templates": [{"templateName": cluster_template, "clusterScope": True}]},
            )
        )
        rollouts.wait_healthy("checkout-v001", timeout=60)
        rollouts.set_image(IMAGE_V2)
        rollouts.wait_phase("Paused", step="4/4", timeout=90)
        actions.promote(rollouts.rest, namespace, "checkout")
        rollouts.wait_healthy("checkout-v002", timeout=60)
        actions.restart(rollouts.rest, namespace, "checkout")
        rollouts.wait(
            lambda s: s.get("restartedAt") is not None and s.get("phase") == "Healthy",
            timeout=90,
            what="pods restarted",
        )
        assert any(r.headers.get("X-Token") == "s3cret" for r in health.requests)
        events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json")
        reasons = {e["reason"] for e in json.loads(events)["items"]}
        assert "RolloutCompleted" in reasons
    finally:
        operator.stop()
        health.stop()
        proxy.stop()
        if operator.errors() or not proxy.requests:
            print(operator.log()[-6000:])

    refused = [r for r in proxy.requests if r.status in (401, 403)]
    assert not refused, f"the API server refused the chart's ServiceAccount: {refused}"
    assert not operator.errors(), operator.errors()

    role = json.loads(cluster.kubectl("get", "role", release, "-n", namespace, "-o", "json"))
    cluster_role = json.loads(cluster.kubectl("get", "clusterrole", release, "-o", "json"))
    in_namespace, cluster_wide = granted(role), granted(cluster_role)
    used: dict[Perm, int] = {}
    beyond = []
    for request in proxy.requests:
        found = perm_of(request)
        if found is None:
            continue
        ns, perm = found
        used[perm] = used.get(perm, 0) + 1
        allowed = in_namespace if ns == namespace else cluster_wide
        if perm not in allowed:
            beyond.append((ns, perm))
    assert not beyond, f"requests no rule of the chart grants: {sorted(set(beyond))}"
    # The traffic routers' rules need a mesh or gateway this scenario does not have.
    routers = {"gateway.networking.k8s.io", "networking.istio.io", "networking.k8s.io"}
    routers |= {"split.smi-spec.io", "getambassador.io", "apisix.apache.org", "appmesh.k8s.aws"}
    routers |= {"traefik.io", "traefik.containo.us"}
    # Grants for features this canary does not use, each exercised by its own e2e test
    # (with the test's credentials; tests/unit/test_chart_rbac.py derives them from the code):
    # experiments, workloadRef, the Job provider, ephemeral metadata, notifications. And the
    # Rollout GET, which the watch-fed cache makes a fallback for before it is warm.
    elsewhere = {
        ("", "configmaps", "get"),
        ("", "pods", "patch"),
        ("", "services", "create"),
        ("apps", "deployments", "get"),
        ("apps", "deployments/scale", "patch"),
        ("herdsman.dev", "rollouts", "get"),
    }
    elsewhere |= {("batch", "jobs", v) for v in ("create", "delete", "get", "list")}
    elsewhere |= {("herdsman.dev", "experiments", v) for v in ("create", "get", "patch")}
    elsewhere.add(("herdsman.dev", "experiments/status", "patch"))
    unexercised = {
        p
        for p in (in_namespace | cluster_wide) - set(used)
        if p[0] not in routers and p not in elsewhere
    }
    print(f"\n{len(proxy.requests)} requests, {len(used)} distinct (verb, resource):")
    for perm, count in sorted(used.items()):
        print(f"  {count:5d}  {perm}")
    print(f"granted but not exercised by this scenario: {sorted(unexercised)}")
    # The scenario reaches nearly every grant: a test that touched little would prove little.
    assert len(unexercised) <= 3, sorted(unexercised)

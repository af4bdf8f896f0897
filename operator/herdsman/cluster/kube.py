"""A thin, async, dict-in dict-out layer over the Kubernetes REST API.

Why not the typed API classes: the operator reads a handful of kinds (including its own CRDs),
and plain dicts are what the pydantic models parse; the typed models would be converted twice.
The operator's calls go out on an asyncio transport (transport.py), at most WORKERS in flight,
each with a request timeout taken from the caller's deadline — which starts counting when the
call is sent, not while it waits for a free connection — and are retried (bounded, jittered)
only when retrying can help: connection errors, 429 and 5xx. `Rest`, the synchronous form on
the official client, serves the kubectl plugin and the tests.
A client-side rate limit (requests per second, with a burst, as client-go's QPS and Burst)
keeps an operator waking thousands of Rollouts at once from flooding the API server; time spent
waiting for it, like time spent waiting for a thread, is not taken from the call's deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiolimiter import AsyncLimiter
from kubernetes import client, config
from urllib3.exceptions import HTTPError, ReadTimeoutError

from herdsman.cluster.budget import AccessPolicy, Deadline
from herdsman.cluster.retry import NO_HOOKS, RetryHooks, call_with_retries
from herdsman.cluster.transport import AsyncTransport

if TYPE_CHECKING:
    from herdsman.cluster.reads import Reads

log = logging.getLogger("herdsman.kube")

# Calls in flight at once, on as many connections to the API server (raise for big clusters).
WORKERS = int(os.environ.get("HERDSMAN_KUBE_WORKERS", "32"))

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


@dataclass(frozen=True)
class RateLimit:
    """At most `qps` requests per second on average and `burst` at once; qps 0: no limit."""

    qps: float = 0.0
    burst: int = 0

    def __post_init__(self) -> None:
        if self.qps < 0 or self.burst < 0:
            raise ValueError(f"a rate limit needs qps and burst >= 0, not {self.qps}/{self.burst}")

    def limiter(self) -> AsyncLimiter | None:
        if self.qps == 0:
            return None
        # A leaky bucket holding `burst` requests that drains at `qps`: aiolimiter's max_rate is
        # the bucket's size, and max_rate / time_period its rate.
        size = max(1, self.burst)  # burst 0: one at a time, at the qps pace
        return AsyncLimiter(size, size / self.qps)


class KubeError(Exception):
    def __init__(
        self, status: int, reason: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        # The retry layer honours a 429's or 503's Retry-After from here.
        self.headers: Mapping[str, str] = headers or {}

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


@dataclass(frozen=True)
class Path:
    """REST paths for the kinds we use; group '' is the core API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return self.version if self.group == "" else f"{self.group}/{self.version}"

    @property
    def base(self) -> str:
        return "/api/v1" if self.group == "" else f"/apis/{self.group}/{self.version}"

    def url(
        self, namespace: str | None = None, name: str | None = None, sub: str | None = None
    ) -> str:
        parts = [self.base]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
        if sub is not None:
            parts.append(sub)
        return "/".join(parts)


ROLLOUTS = Path("herdsman.dev", "v1alpha1", "rollouts")
ANALYSIS_RUNS = Path("herdsman.dev", "v1alpha1", "analysisruns")
ANALYSIS_TEMPLATES = Path("herdsman.dev", "v1alpha1", "analysistemplates")
CLUSTER_ANALYSIS_TEMPLATES = Path(
    "herdsman.dev", "v1alpha1", "clusteranalysistemplates", namespaced=False
)
REPLICA_SETS = Path("apps", "v1", "replicasets")
DEPLOYMENTS = Path("apps", "v1", "deployments")
SERVICES = Path("", "v1", "services")
PODS = Path("", "v1", "pods")
SECRETS = Path("", "v1", "secrets")
CONFIG_MAPS = Path("", "v1", "configmaps")
EVENTS = Path("", "v1", "events")


def load_config(kubeconfig: str | None = None, *, connections: int = WORKERS) -> client.ApiClient:
    """In a pod: the service account; elsewhere: $KUBECONFIG or the given file."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    # One connection per call in flight (Kube's workers), not urllib3's default handful.
    configuration.connection_pool_maxsize = connections
    # Retries belong to our deadline-aware layer, not to urllib3 behind its back.
    configuration.retries = 0
    return client.ApiClient(configuration)


class Rest:
    """Synchronous REST calls returning decoded JSON; the kubectl plugin and tests use it as is."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Any,
        content_type: str,
        timeout: float,
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            method_, url, headers_, body_, post = self.api.param_serialize(
                method,
                path,
                query_params=list((query or {}).items()) or None,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(
                method_, url, headers_, body_, post, _request_timeout=timeout
            )
            data = response.read()  # type: ignore[no-untyped-call]
        except ReadTimeoutError as exc:
            raise TimeoutError(f"{method} {path}: {exc}") from exc
        except (HTTPError, OSError) as exc:
            raise ConnectionError(f"{method} {path}: {exc}") from exc
        if response.status >= 400:
            raise _error(response.status, response.reason, data)
        return json.loads(data) if data else None

    def get(self, path: str, *, timeout: float = 10.0) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.call("GET", path, None, None, "application/json", timeout)
        except KubeError as err:
            if err.not_found:
                return None
            raise
        return result

    def list(
        self, path: str, *, labels: str | None = None, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        query = {"labelSelector": labels} if labels else None
        result = self.call("GET", path, query, None, "application/json", timeout)
        items: list[dict[str, Any]] = result.get("items", []) if result else []
        return items

    def create(self, path: str, body: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", path, None, body, "application/json", timeout)
        return result

    def patch(
        self, path: str, body: Any, *, content_type: str = MERGE, timeout: float = 10.0
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.call("PATCH", path, None, body, content_type, timeout)
        return result

    def delete(self, path: str, *, timeout: float = 10.0) -> None:
        try:
            self.call(
                "DELETE",
                path,
                None,
                {"propagationPolicy": "Background"},
                "application/json",
                timeout,
            )
        except KubeError as err:
            if not err.not_found:
                raise


def resource_of(path: str) -> str:
    """The resource an API path names, with its subresource: `replicasets/scale`, `events`.

    Bounded by the kinds of object the operator touches, so it can label a metric.
    """
    parts = path.split("?", 1)[0].strip("/").split("/")
    # /api/v1/... or /apis/<group>/<version>/...
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) > 2 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return "unknown"
    return f"{rest[0]}/{rest[2]}" if len(rest) > 2 else rest[0]


class Kube:
    def __init__(
        self,
        api: client.ApiClient,
        policy: AccessPolicy | None = None,
        on_error: Callable[[str, int], None] | None = None,
        hooks: RetryHooks = NO_HOOKS,
        on_write: Callable[[Any], None] | None = None,
        on_request: Callable[[str, str], None] | None = None,
        workers: int = WORKERS,
        rate: RateLimit = RateLimit(),
        on_throttle: Callable[[float], None] | None = None,
    ) -> None:
        self.policy = policy or AccessPolicy()
        self.hooks = hooks
        self._on_error = on_error
        # told the verb and resource of every attempt sent (a metric)
        self._on_request = on_request
        # Told every successful write's response (the watch-fed cache keeps it until the
        # watch catches up, so a pass never reads a state older than its own write).
        self.on_write = on_write
        # `workers` connections, and a semaphore in front of them: a call waits for a slot
        # *before* its deadline starts counting, so a queue of our own making slows passes down
        # but never times them out.
        self.workers = max(1, workers)
        self.transport = AsyncTransport(api.configuration, self.workers)
        self._slots: asyncio.Semaphore | None = None
        # One token per request (retries are spaced by their own backoff, and few).
        self._limiter = rate.limiter()
        self._on_throttle = on_throttle  # told the seconds a request waited for the rate limit
        # Watch-fed answers to GETs by name of the kinds it holds (cluster/reads.py); set by
        # the operator's wiring, None in tools and tests that read the server every time.
        self.reads: Reads | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        deadline: Deadline,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API call under `deadline`, with bounded retries; returns the decoded JSON body.

        A 4xx answer raises KubeError at once (callers act on 404 and 409); transport errors,
        429 and 5xx are retried by `call_with_retries` within the deadline, then raise GaveUp.
        """

        kind = resource_of(path)

        async def attempt(_: str, call_deadline: Deadline) -> Any:
            timeout = max(0.05, call_deadline.remaining())
            if self._on_request is not None:
                self._on_request(method, kind)
            status, reason, data, headers = await self.transport.call(
                method, path, query, body, content_type, timeout
            )
            if status >= 400:
                raise _error(status, reason, data, headers)
            return json.loads(data) if data else None

        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        queued = deadline.clock()
        if self._limiter is not None:
            await self._limiter.acquire()
            throttled = deadline.clock() - queued
            if throttled > 0.001 and self._on_throttle is not None:
                self._on_throttle(throttled)
        try:
            async with self._slots:
                deadline.postpone(deadline.clock() - queued)
                result = await call_with_retries(
                    attempt,
                    ["kube-apiserver"],
                    deadline=deadline,
                    policy=self.policy,
                    name=f"{method} {path}",
                    hooks=self.hooks,
                )
        except KubeError as err:
            if self._on_error is not None:
                self._on_error(method, err.status)
            if err.conflict and method != "GET" and self.reads is not None:
                self.reads.conflicted(path, body)
            raise
        if method in ("POST", "PATCH", "PUT") and self.on_write is not None:
            self.on_write(result)
        if method != "GET" and self.reads is not None:
            self.reads.wrote(method, path, result)
        return result

    async def close(self) -> None:
        if self.reads is not None:
            await self.reads.close()
        await self.transport.close()

    # --- verbs ------------------------------------------------------------------------------------

    async def get(
        self, path: str, *, deadline: Deadline, ours: bool = False
    ) -> dict[str, Any] | None:
        """The object at `path`, None when absent. `ours`: only this operator creates and
        deletes it, so a watch that does not show it may answer (cluster/reads.py)."""
        if self.reads is not None:
            hit, body = self.reads.lookup(path, ours=ours)
            if hit:
                return body
        try:
            result: dict[str, Any] | None = await self.request("GET", path, deadline=deadline)
        except KubeError as err:
            if not err.not_found:
                raise
            result = None
        if self.reads is not None:
            self.reads.learned(path, result)
        return result

    async def list(
        self, path: str, *, deadline: Deadline, labels: str | None = None
    ) -> list[dict[str, Any]]:
        query = {"labelSelector": labels} if labels else None
        try:
            result = await self.request("GET", path, deadline=deadline, query=query)
        except KubeError as err:
            if err.not_found:  # the kind itself is not installed
                return []
            raise
        items: list[dict[str, Any]] = result.get("items", []) if result else []
        return items

    async def create(
        self, path: str, body: dict[str, Any], *, deadline: Deadline
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", path, deadline=deadline, body=body)
        return result

    async def patch(
        self, path: str, body: Any, *, deadline: Deadline, content_type: str = MERGE
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "PATCH", path, deadline=deadline, body=body, content_type=content_type
        )
        return result

    async def delete(
        self, path: str, *, deadline: Deadline, propagation: str = "Background"
    ) -> None:
        try:
            await self.request(
                "DELETE",
                path,
                deadline=deadline,
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": propagation,
                },
            )
        except KubeError as err:
            if not err.not_found:
                raise


def _error(
    status: int,
    reason: str | None,
    data: bytes | None,
    headers: Mapping[str, str] | None = None,
) -> KubeError:
    """The API server's Status object, when it sent one, says best what went wrong."""
    reason, message = str(reason or ""), ""
    try:
        payload = json.loads(data or b"{}")
        reason = payload.get("reason", reason)
        message = payload.get("message", "")
    except (TypeError, ValueError):
        message = (data or b"").decode(errors="replace")
    return KubeError(status, reason, message, headers)

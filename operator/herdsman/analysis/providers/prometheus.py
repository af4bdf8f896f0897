"""The Prometheus provider, through prometheus-api-client.

Instant queries feed the conditions (`result` is a float for a scalar, a list of floats for a
vector, the text for a string); with Argo's `rangeQuery`, `result` is every value of every
series over the range, in order. Range queries also feed the judge (the samples of the one
series a judged query must return per group).

Authentication: a bearer token or basic auth from Secrets (Herdsman's forms), Argo's
`basicAuth` (strings, usually Secret arguments), OAuth2 client credentials (a token fetched and
cached by herdsman.analysis.providers.oauth2) and AWS SigV4 for Amazon Managed Prometheus
(herdsman.analysis.providers.aws). Several `addresses` are tried in order by the shared retry
policy, so one dead Prometheus of a pair costs a refused connection, not a measurement.

prometheus-api-client is synchronous (requests), so every attempt runs on a small dedicated
thread pool with its socket timeouts taken from the attempt's deadline: an attempt the event
loop has given up on ends its thread soon after, and a hanging Prometheus can occupy at most
`WORKERS` threads, never the event loop or Kopf's executor.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import hashlib
import math
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
import requests.auth
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from herdsman.analysis.conditions import Observation, observe_numbers, value_text
from herdsman.analysis.providers.base import (
    Provider,
    ProviderContext,
    Samples,
    Window,
    resolve_headers,
)
from herdsman.analysis.providers.oauth2 import bearer_token
from herdsman.analysis.providers.timeexpr import evaluate as evaluate_time
from herdsman.api.analysis import PrometheusMetric
from herdsman.api.base import duration_seconds
from herdsman.cluster.budget import Deadline
from herdsman.cluster.retry import HttpStatusError, call_with_retries

T = TypeVar("T")

WORKERS = 8
_EXECUTOR = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="herdsman-prometheus")
atexit.register(_EXECUTOR.shutdown, wait=False, cancel_futures=True)

MAX_POINTS = 10_000
"""Prometheus refuses range queries of more than 11,000 points per series; stay below."""


class PrometheusQueryError(ValueError):
    """Prometheus answered, but not with something a condition or the judge can use."""


@dataclass(frozen=True)
class Connection:
    """How to talk to the servers: resolved headers, credentials and TLS verification."""

    headers: dict[str, str]
    auth: tuple[str, str] | requests.auth.AuthBase | None = None
    verify: bool | str = True
    """False (insecure), True (system CAs) or the path of a PEM bundle."""


async def connection(
    spec: PrometheusMetric, context: ProviderContext, deadline: Deadline
) -> Connection:
    """Headers, credentials and TLS settings, with Secrets read through the context."""
    secrets_deadline = deadline.child(context.policy.call_timeout)
    headers = await resolve_headers(spec.headers, context, secrets_deadline)
    auth: tuple[str, str] | requests.auth.AuthBase | None = None
    authentication = spec.authentication
    if authentication is not None:
        if authentication.bearer_token is not None:
            token = await context.secret(authentication.bearer_token, secrets_deadline)
            headers["Authorization"] = f"Bearer {token.strip()}"
        elif authentication.basic is not None:
            password = await context.secret(authentication.basic.password, secrets_deadline)
            auth = (authentication.basic.username, password)
        elif authentication.basic_auth is not None:
            auth = (authentication.basic_auth.username, authentication.basic_auth.password)
        elif authentication.oauth2 is not None:
            token = await bearer_token(authentication.oauth2, context, deadline)
            headers["Authorization"] = f"Bearer {token}"
        elif authentication.sigv4 is not None:
            from herdsman.analysis.providers.aws import SigV4Auth, aws_access

            sigv4 = authentication.sigv4
            access = await aws_access(
                context,
                deadline,
                region=sigv4.region,
                profile=sigv4.profile,
                role_arn=sigv4.role_arn,
            )
            auth = SigV4Auth(access)
    verify: bool | str = True
    if spec.insecure:
        verify = False
    elif spec.ca is not None:
        verify = str(_ca_file(await context.secret(spec.ca, secrets_deadline)))
    return Connection(headers=headers, auth=auth, verify=verify)


_CA_DIR: Path | None = None


def _ca_file(pem: str) -> Path:
    """requests wants a CA bundle as a file: one per distinct bundle, removed at exit."""
    global _CA_DIR
    if _CA_DIR is None:
        _CA_DIR = Path(tempfile.mkdtemp(prefix="herdsman-ca-"))
        atexit.register(shutil.rmtree, _CA_DIR, ignore_errors=True)
    path = _CA_DIR / (hashlib.sha256(pem.encode()).hexdigest()[:32] + ".pem")
    if not path.exists():
        path.write_text(pem)
    return path


def _raise_for_status(response: requests.Response, *_: Any, **__: Any) -> None:
    """A requests response hook: an error answer becomes HttpStatusError (with Retry-After)."""
    if response.status_code < 400:
        return
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("error", ""))
    except ValueError:
        detail = response.text[:200]
    url = response.url.split("?", 1)[0]
    raise HttpStatusError(
        response.status_code, detail, retry_after=response.headers.get("Retry-After"), url=url
    )


def _call(
    url: str, conn: Connection, timeout: float, request: Callable[[PrometheusConnect], T]
) -> T:
    """One attempt against one server, on a worker thread; library errors become builtins."""
    session = requests.Session()
    session.verify = conn.verify
    session.hooks["response"].append(_raise_for_status)
    try:
        client = PrometheusConnect(
            url=url.rstrip("/"),
            headers=conn.headers or None,
            auth=conn.auth,
            session=session,
            retry=Retry(total=0, read=False),
            timeout=max(timeout, 0.001),
        )
        return request(client)
    except requests.Timeout as exc:
        raise TimeoutError(f"{url}: {exc}") from exc
    except requests.ConnectionError as exc:
        raise ConnectionError(f"{url}: {exc}") from exc
    finally:
        session.close()


async def _run(
    spec: PrometheusMetric,
    context: ProviderContext,
    deadline: Deadline,
    request: Callable[[PrometheusConnect], T],
) -> T:
    conn = await connection(spec, context, deadline)
    policy = context.policy
    if spec.timeout is not None:
        policy = dataclasses.replace(policy, call_timeout=min(policy.call_timeout, spec.timeout))
    loop = asyncio.get_running_loop()

    async def attempt(url: str, attempt_deadline: Deadline) -> T:
        timeout = attempt_deadline.remaining()
        return await loop.run_in_executor(_EXECUTOR, _call, url, conn, timeout, request)

    return await call_with_retries(
        attempt,
        spec.endpoints(),
        deadline=deadline,
        policy=policy,
        name=f"prometheus query for {context.metric or 'metric'}",
        hooks=context.hooks,
    )


def _number(text: Any) -> float:
    return float(text)


def parse_instant(data: Any) -> Observation:
    """An instant query's `data.result` as the conditions see it (see the module docstring)."""
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        if any("values" in series for series in data):
            raise PrometheusQueryError(
                "the query returned a range vector; conditions need an instant vector or a scalar"
            )
        try:
            return observe_numbers([_number(series["value"][1]) for series in data])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PrometheusQueryError(f"malformed vector {value_text(data)}") from exc
    if isinstance(data, list) and len(data) == 2:
        try:
            return observe_numbers(_number(data[1]))
        except (TypeError, ValueError):
            return Observation(str(data[1]))
    raise PrometheusQueryError(f"unexpected answer {value_text(data)}")


def parse_range(data: Any) -> list[float]:
    """A range query's single series as a list of floats ([] when there is no series)."""
    return parse_range_samples(data).values


def parse_range_samples(data: Any) -> Samples:
    """A range query's single series, values with their times (empty when there is none)."""
    if not isinstance(data, list):
        raise PrometheusQueryError(f"unexpected answer {value_text(data)}")
    if not data:
        return Samples([], [])
    if len(data) > 1:
        raise PrometheusQueryError(
            f"a judged query must return one series per group, got {len(data)}: aggregate it, "
            "e.g. sum(...) or histogram_quantile(0.99, sum by (le) (...))"
        )
    try:
        points = [(_number(stamp), _number(value)) for stamp, value in data[0]["values"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise PrometheusQueryError(f"malformed matrix {value_text(data)}") from exc
    return Samples([t for t, _ in points], [v for _, v in points])


def range_step(window: Window) -> float:
    """The window's step, coarsened so that no series exceeds MAX_POINTS."""
    span = max(0.0, (window.end - window.start).total_seconds())
    return max(window.step_seconds, math.ceil(span / MAX_POINTS), 1.0)


def parse_matrix(data: Any) -> Observation:
    """A range query's answer for the conditions: every value of every series, in order."""
    if not isinstance(data, list):
        raise PrometheusQueryError(f"unexpected answer {value_text(data)}")
    try:
        return observe_numbers(
            [_number(value) for series in data for _, value in series.get("values", [])]
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise PrometheusQueryError(f"malformed matrix {value_text(data)}") from exc


class PrometheusProvider(Provider[PrometheusMetric]):
    key = "prometheus"

    async def observe(
        self, spec: PrometheusMetric, context: ProviderContext, deadline: Deadline
    ) -> Observation:
        if spec.range_query is not None:
            return await self._range_observation(spec, context, deadline)

        def instant(client: PrometheusConnect) -> Any:
            return client.custom_query(spec.query)

        return parse_instant(await _run(spec, context, deadline, instant))

    async def _range_observation(
        self, spec: PrometheusMetric, context: ProviderContext, deadline: Deadline
    ) -> Observation:
        assert spec.range_query is not None
        start = evaluate_time(spec.range_query.start)
        end = evaluate_time(spec.range_query.end)
        if start > end:
            raise PrometheusQueryError(
                f"rangeQuery: start {start.isoformat()} is after end {end.isoformat()}"
            )
        window = Window(start, end, duration_seconds(spec.range_query.step) or 60.0)
        step = f"{range_step(window):g}"

        def ranged(client: PrometheusConnect) -> Any:
            return client.custom_query_range(spec.query, start, end, step)

        return parse_matrix(await _run(spec, context, deadline, ranged))

    async def samples(
        self, spec: PrometheusMetric, context: ProviderContext, deadline: Deadline, window: Window
    ) -> Samples:
        step = f"{range_step(window):g}"

        def ranged(client: PrometheusConnect) -> Any:
            return client.custom_query_range(spec.query, window.start, window.end, step)

        return parse_range_samples(await _run(spec, context, deadline, ranged))

"""One HTTP exchange for the providers that speak plain HTTP (Datadog, New Relic, Wavefront,
Graphite, SkyWalking, Kayenta, OAuth2 token endpoints), and the Secret look-ups they share.

Every exchange goes through aiohttp (Kopf's own HTTP stack, so it costs no new dependency) with
a timeout taken from the attempt's deadline, so a cancelled attempt really closes its socket.
Errors come out in the shapes the shared retry policy classifies: HttpStatusError (with
Retry-After) for an error answer, TimeoutError and ConnectionError for transport trouble, and
`ProviderResponseError` (never retried) for an answer that cannot be used.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from herdsman.analysis.providers.base import ProviderContext
from herdsman.api.analysis_ref import SecretKeyRef
from herdsman.cluster.budget import Deadline
from herdsman.cluster.retry import HttpStatusError, call_with_retries

T = TypeVar("T")

MAX_BODY = 4 * 1024 * 1024
"""Answers larger than this are refused rather than read into memory."""


class ProviderResponseError(ValueError):
    """The service answered, but not with something a measurement can use."""


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    headers: Mapping[str, str]

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError as exc:
            raise ProviderResponseError(f"the answer is not JSON: {self.text[:200]!r}") from exc


async def exchange(
    method: str,
    url: str,
    deadline: Deadline,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    json_body: Any = None,
    data: Any = None,
    request_timeout: float | None = None,
    ssl: bool = True,
) -> Answer:
    """One request; an answer of 400 or more raises HttpStatusError (see the module docstring)."""
    remaining = deadline.remaining()
    seconds = remaining if request_timeout is None else min(request_timeout, remaining)
    client_timeout = aiohttp.ClientTimeout(total=max(0.001, seconds))
    try:
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.request(
                method,
                url,
                headers=dict(headers or {}),
                params=params,
                json=json_body,
                data=data,
                ssl=ssl,
            ) as response,
        ):
            raw = await response.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                raise ProviderResponseError(f"the answer is larger than {MAX_BODY} bytes")
            text = raw.decode(_charset(response), "replace")
            if response.status >= 400:
                raise HttpStatusError(
                    response.status,
                    text[:300],
                    retry_after=response.headers.get("Retry-After"),
                    url=url,
                )
            return Answer(response.status, text, dict(response.headers))
    except aiohttp.ClientConnectionError as exc:
        if isinstance(exc, TimeoutError):
            raise
        raise ConnectionError(f"{url}: {exc}") from exc
    except aiohttp.InvalidURL as exc:
        raise ProviderResponseError(f"invalid URL {url!r}") from exc


def basic_authorization(username: str, password: str) -> str:
    """An `Authorization` header value for HTTP Basic (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _charset(response: aiohttp.ClientResponse) -> str:
    try:
        charset = response.charset or "utf-8"
        "".encode(charset)
        return charset
    except LookupError:
        return "utf-8"


async def with_retries(
    context: ProviderContext,
    deadline: Deadline,
    what: str,
    attempt: Callable[[Deadline], Awaitable[T]],
) -> T:
    """`attempt(attempt_deadline)` under the shared retry policy, against one endpoint."""

    async def call(_: str, attempt_deadline: Deadline) -> T:
        return await attempt(attempt_deadline)

    return await call_with_retries(
        call,
        [what],
        deadline=deadline,
        policy=context.policy,
        name=f"{what} for {context.metric or 'metric'}",
        hooks=context.hooks,
    )


async def secret_keys(
    context: ProviderContext,
    secret: str,
    required: Sequence[str],
    optional: Sequence[str] = (),
    *,
    deadline: Deadline,
) -> dict[str, str]:
    """Keys of one Secret in the run's namespace; a missing required key names Secret and key."""
    child = deadline.child(context.policy.call_timeout)
    values: dict[str, str] = {}
    for key in required:
        try:
            values[key] = (await context.secret(SecretKeyRef(name=secret, key=key), child)).strip()
        except LookupError as exc:
            raise LookupError(
                f"credentials: Secret {context.namespace}/{secret} needs the key {key!r} ({exc})"
            ) from exc
        if not values[key]:
            raise LookupError(
                f"credentials: Secret {context.namespace}/{secret} key {key!r} is empty"
            )
    for key in optional:
        try:
            value = (await context.secret(SecretKeyRef(name=secret, key=key), child)).strip()
        except LookupError:
            continue
        if value:
            values[key] = value
    return values


def base_url(address: str, default_scheme: str = "https") -> str:
    """An address as Argo takes it (a host, or a URL), without a trailing slash."""
    text = address.strip().rstrip("/")
    if "://" not in text:
        text = f"{default_scheme}://{text}"
    return text

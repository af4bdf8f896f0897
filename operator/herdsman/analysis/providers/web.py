"""The web provider: an HTTP request whose JSON answer (or a part of it) is the measurement.

`result` is the JSON value `jsonPath` selects: one value as it is, several as a list, none (or
null) as no data. Without a jsonPath it is the whole JSON document, or the body text when the
answer is not JSON. `jsonPath` takes Argo's Kubernetes-style `{$.data.ok}` as well as plain
`$.data.ok`, evaluated by jsonpath-ng (with its filter extensions).

HTTP goes through aiohttp (already present as Kopf's HTTP stack), so an attempt that passes its
deadline is truly cancelled, socket and all. Answers larger than MAX_BODY are refused.

`authentication` is Argo's block: `basicAuth` (strings, usually Secret arguments), `oauth2`
client credentials (herdsman.analysis.providers.oauth2) or `sigv4` (AWS request signing, with
the credentials herdsman.analysis.providers.aws describes).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import aiohttp
from jsonpath_ng import JSONPath
from jsonpath_ng.ext.parser import parse as parse_jsonpath

from herdsman.analysis.conditions import Observation
from herdsman.analysis.providers.base import Provider, ProviderContext, resolve_headers
from herdsman.analysis.providers.http import basic_authorization
from herdsman.analysis.providers.oauth2 import bearer_token
from herdsman.api.analysis import WebMetric
from herdsman.cluster.budget import Deadline
from herdsman.cluster.retry import HttpStatusError, call_with_retries

MAX_BODY = 1024 * 1024


class WebResponseError(ValueError):
    """The endpoint answered, but not with something the metric can use."""


@functools.lru_cache(maxsize=256)
def compile_json_path(path: str) -> JSONPath:
    """Parse a JSONPath, accepting Kubernetes' `{...}` wrapper and a missing leading `$`."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("."):
        text = "$" + text
    try:
        return parse_jsonpath(text)
    except Exception as exc:  # jsonpath-ng raises plain Exceptions besides its own
        raise WebResponseError(f"invalid jsonPath {path!r}: {exc}") from exc


def select(document: Any, json_path: str | None) -> Observation:
    """The Observation for an already-decoded answer."""
    if json_path is None:
        return Observation(document, has_data=document is not None)
    matches = [match.value for match in compile_json_path(json_path).find(document)]
    if not matches:
        return Observation(None, has_data=False)
    value = matches[0] if len(matches) == 1 else matches
    return Observation(value, has_data=value is not None)


def decode(body: str, json_path: str | None) -> Observation:
    try:
        document = json.loads(body)
    except ValueError as exc:
        if json_path is not None:
            raise WebResponseError(
                f"the answer is not JSON, so jsonPath cannot apply: {exc}"
            ) from exc
        return Observation(body, has_data=bool(body.strip()))
    return select(document, json_path)


def request_body(spec: WebMetric, headers: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    if spec.json_body is not None:
        return json.dumps(spec.json_body), {"Content-Type": "application/json", **headers}
    return spec.body, headers


async def authenticate(
    spec: WebMetric, headers: dict[str, str], context: ProviderContext, deadline: Deadline
) -> dict[str, str]:
    """The headers with the `authentication` block applied."""
    auth = spec.authentication
    if auth is None:
        return headers
    if auth.basic_auth is not None:
        basic = basic_authorization(auth.basic_auth.username, auth.basic_auth.password)
        return {**headers, "Authorization": basic}
    if auth.oauth2 is not None:
        token = await bearer_token(auth.oauth2, context, deadline)
        return {**headers, "Authorization": f"Bearer {token}"}
    assert auth.sigv4 is not None
    from herdsman.analysis.providers.aws import aws_access, sign_headers

    sigv4 = auth.sigv4
    access = await aws_access(
        context, deadline, region=sigv4.region, profile=sigv4.profile, role_arn=sigv4.role_arn
    )
    body, with_type = request_body(spec, headers)
    return sign_headers(access, spec.method, spec.url, body or "", with_type)


async def _fetch(spec: WebMetric, headers: dict[str, str], url: str, deadline: Deadline) -> str:
    """One attempt; transport errors become builtins so the retry policy can classify them."""
    timeout = aiohttp.ClientTimeout(
        total=max(0.001, min(deadline.remaining(), spec.timeout_seconds))
    )
    body, headers = request_body(spec, headers)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                spec.method, url, headers=headers, data=body, ssl=not spec.insecure
            ) as response,
        ):
            raw = await response.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                raise WebResponseError(f"the answer is larger than {MAX_BODY} bytes")
            try:
                text = raw.decode(response.charset or "utf-8", "replace")
            except LookupError:
                text = raw.decode("utf-8", "replace")
            if response.status >= 400:
                raise HttpStatusError(
                    response.status,
                    text[:200],
                    retry_after=response.headers.get("Retry-After"),
                    url=url,
                )
            return text
    except aiohttp.ClientConnectionError as exc:
        if isinstance(exc, TimeoutError):
            raise
        raise ConnectionError(f"{url}: {exc}") from exc
    except aiohttp.InvalidURL as exc:
        raise WebResponseError(f"invalid URL {url!r}") from exc


class WebProvider(Provider[WebMetric]):
    key = "web"

    async def observe(
        self, spec: WebMetric, context: ProviderContext, deadline: Deadline
    ) -> Observation:
        headers = await resolve_headers(
            spec.headers, context, deadline.child(context.policy.call_timeout)
        )
        headers = await authenticate(spec, headers, context, deadline)

        async def attempt(url: str, attempt_deadline: Deadline) -> str:
            return await _fetch(spec, headers, url, attempt_deadline)

        body = await call_with_retries(
            attempt,
            [spec.url],
            deadline=deadline,
            policy=context.policy,
            name=f"web request for {context.metric or 'metric'}",
            hooks=context.hooks,
        )
        return decode(body, spec.json_path)

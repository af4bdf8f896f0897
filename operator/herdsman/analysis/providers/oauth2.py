"""OAuth2 client credentials (RFC 6749 §4.4) for the Prometheus and web providers.

One POST to the token URL: `grant_type=client_credentials` and the space-separated scopes in a
form body, the client authenticated with HTTP Basic as the RFC recommends. A server that refuses
Basic with 400/401 is asked once more with the credentials in the body instead (RFC 6749 §2.3.1
allows both; golang.org/x/oauth2, which Argo uses, falls back the same way).

Tokens are cached per (token URL, client, secret, scopes) until shortly before they expire, so a
metric measured every 30 s does not fetch a token every 30 s. The cache is memory only: an
operator that restarts fetches a fresh token, which is all it would cost.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from herdsman.analysis.providers.base import ProviderContext
from herdsman.analysis.providers.http import (
    ProviderResponseError,
    basic_authorization,
    exchange,
    with_retries,
)
from herdsman.api.providers import OAuth2ClientCredentials
from herdsman.cluster.budget import Deadline
from herdsman.cluster.retry import HttpStatusError

EXPIRY_MARGIN = 30.0
"""Seconds before its expiry a cached token is considered expired."""
DEFAULT_LIFETIME = 300.0
"""How long a token without `expires_in` is reused."""
MAX_CACHED = 256


@dataclass(frozen=True)
class _Token:
    value: str
    expires: float


_CACHE: dict[str, _Token] = {}


def _key(spec: OAuth2ClientCredentials) -> str:
    material = "\0".join([spec.token_url, spec.client_id, spec.client_secret, *spec.scopes])
    return hashlib.sha256(material.encode()).hexdigest()


def forget_tokens() -> None:
    """Empty the cache (tests, and a token a server has just refused)."""
    _CACHE.clear()


async def bearer_token(
    spec: OAuth2ClientCredentials,
    context: ProviderContext,
    deadline: Deadline,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """A valid access token for `spec`, from the cache or the token endpoint."""
    key = _key(spec)
    cached = _CACHE.get(key)
    if cached is not None and cached.expires > clock():
        return cached.value

    async def attempt(attempt_deadline: Deadline) -> _Token:
        return await _fetch(spec, attempt_deadline, clock)

    token = await with_retries(context, deadline, "oauth2 token request", attempt)
    if len(_CACHE) >= MAX_CACHED:
        _CACHE.clear()
    _CACHE[key] = token
    return token.value


async def _fetch(
    spec: OAuth2ClientCredentials, deadline: Deadline, clock: Callable[[], float]
) -> _Token:
    form = {"grant_type": "client_credentials"}
    if spec.scopes:
        form["scope"] = " ".join(spec.scopes)
    headers = {"Accept": "application/json"}
    basic = {**headers, "Authorization": basic_authorization(spec.client_id, spec.client_secret)}
    try:
        answer = await exchange("POST", spec.token_url, deadline, headers=basic, data=form)
    except HttpStatusError as exc:
        if exc.status not in (400, 401):
            raise
        body = {**form, "client_id": spec.client_id, "client_secret": spec.client_secret}
        answer = await exchange("POST", spec.token_url, deadline, headers=headers, data=body)
    document = answer.json()
    if not isinstance(document, dict) or not isinstance(document.get("access_token"), str):
        raise ProviderResponseError("the OAuth2 token endpoint answered without an access_token")
    token_type = str(document.get("token_type", "bearer")).lower()
    if token_type != "bearer":
        raise ProviderResponseError(f"the OAuth2 token is of type {token_type!r}, not bearer")
    lifetime = document.get("expires_in")
    seconds = float(lifetime) if isinstance(lifetime, int | float) else DEFAULT_LIFETIME
    return _Token(document["access_token"], clock() + max(0.0, seconds - EXPIRY_MARGIN))

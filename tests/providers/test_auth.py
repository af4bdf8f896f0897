"""Authentication of the Prometheus and web providers as Argo writes it: `basicAuth` strings,
OAuth2 client credentials (token fetched, cached, sent as a bearer token) and AWS SigV4, plus
Prometheus' `rangeQuery`. Each against a local server that checks what arrives."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest

from harness.analysis import metric, prometheus, run_of, web
from harness.fakes import FakeSecrets
from harness.local_http import LocalHttpServer, Reply, Request
from herdsman.analysis.measure import measure
from herdsman.analysis.providers import oauth2
from herdsman.analysis.providers.timeexpr import TimeExpressionError, evaluate, go_duration
from herdsman.analysis.runs import Due, MeasurementResult
from herdsman.cluster.budget import AccessPolicy, Deadline

pytestmark = pytest.mark.providers

FAST = AccessPolicy(attempts=3, backoff_base=0.01, backoff_cap=0.05, call_timeout=2.0)
OAUTH_ARGS = [
    {
        "name": "oauthSecret",
        "valueFrom": {"secretKeyRef": {"name": "oauth-secret", "key": "secret"}},
    }
]
SECRETS = {("shop", "oauth-secret", "secret"): "client-s3cret"}


def vector(value: str) -> Reply:
    result = [{"metric": {}, "value": [1.7e9, value]}]
    return Reply(200, {"status": "success", "data": {"resultType": "vector", "result": result}})


def run_metric(
    provider: dict[str, Any],
    condition: str,
    args: list[dict[str, Any]],
    secrets: dict[tuple[str, str, str], str],
) -> MeasurementResult:
    run = run_of(metric("m", provider=provider, successCondition=condition), args=args)
    return asyncio.run(
        measure(run, [Due("m")], deadline=Deadline(5), secrets=FakeSecrets(secrets), policy=FAST)
    )[0]


class TokenEndpoint:
    """An OAuth2 token endpoint that accepts client credentials in Basic or, if told, only in
    the form body."""

    def __init__(self, *, body_only: bool = False, expires_in: int = 3600) -> None:
        self.body_only = body_only
        self.expires_in = expires_in
        self.issued = 0

    def __call__(self, request: Request) -> Reply:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type"})
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic ") and not self.body_only:
            client, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        else:
            client, secret = form.get("client_id", ""), form.get("client_secret", "")
        if (client, secret) != ("my-client-id", "client-s3cret"):
            return Reply(401, {"error": "invalid_client"})
        if form.get("scope") != "read:metrics other":
            return Reply(400, {"error": "invalid_scope"})
        self.issued += 1
        token = f"token-{self.issued}"
        return Reply(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        )


def bearer_only(answer: Reply, token: str = "token-1") -> Any:
    def handler(request: Request) -> Reply:
        if request.headers.get("Authorization") != f"Bearer {token}":
            return Reply(401, {"status": "error", "error": "unauthorized"})
        return answer

    return handler


def oauth_block(server: LocalHttpServer) -> dict[str, Any]:
    return {
        "oauth2": {
            "tokenUrl": server.url("/token"),
            "clientId": "my-client-id",
            "clientSecret": "{{ args.oauthSecret }}",
            "scopes": ["read:metrics", "other"],
        }
    }


@pytest.mark.parametrize("body_only", [False, True], ids=["basic-client-auth", "form-client-auth"])
def test_prometheus_oauth2_fetches_a_token_once_and_sends_it(body_only: bool) -> None:
    oauth2.forget_tokens()
    tokens = TokenEndpoint(body_only=body_only)
    with LocalHttpServer(
        {"/token": tokens, "/api/v1/query": bearer_only(vector("0.99"))}
    ) as server:
        provider = prometheus(
            "sum(up)", [server.url()], timeout=40, authentication=oauth_block(server)
        )
        first = run_metric(provider, "result[0] >= 0.95", OAUTH_ARGS, SECRETS)
        second = run_metric(provider, "result[0] >= 0.95", OAUTH_ARGS, SECRETS)
    assert (first.phase, second.phase) == ("Successful", "Successful"), first.message
    assert tokens.issued == 1  # cached between measurements


def test_an_expired_token_is_fetched_again() -> None:
    oauth2.forget_tokens()
    tokens = TokenEndpoint(expires_in=0)
    with LocalHttpServer({"/token": tokens, "/api/v1/query": lambda r: vector("1")}) as server:
        provider = prometheus("up", [server.url()], authentication=oauth_block(server))
        run_metric(provider, "result[0] >= 0.95", OAUTH_ARGS, SECRETS)
        run_metric(provider, "result[0] >= 0.95", OAUTH_ARGS, SECRETS)
    assert tokens.issued == 2


def test_a_refused_client_is_an_error_and_no_query_is_sent() -> None:
    oauth2.forget_tokens()
    with LocalHttpServer(
        {"/token": TokenEndpoint(), "/api/v1/query": lambda r: vector("1")}
    ) as server:
        provider = prometheus("up", [server.url()], authentication=oauth_block(server))
        wrong = {("shop", "oauth-secret", "secret"): "not-the-secret"}
        result = run_metric(provider, "result[0] >= 0.95", OAUTH_ARGS, wrong)
        queries = server.hits("/api/v1/query")
    assert result.phase == "Error"
    assert "401" in result.message
    assert "not-the-secret" not in result.message
    assert queries == 0


def test_web_oauth2_as_argo_documents_it() -> None:
    oauth2.forget_tokens()
    with LocalHttpServer(
        {
            "/token": TokenEndpoint(),
            "/api/v1/measurement": bearer_only(Reply(200, {"data": {"ok": True}})),
        }
    ) as server:
        provider = web(
            server.url("/api/v1/measurement?service={{ args.service-name }}"),
            timeoutSeconds=20,
            authentication=oauth_block(server),
            headers=[{"key": "Content-Type", "value": "application/json"}],
            jsonPath="{$.data.ok}",
        )
        args = [*OAUTH_ARGS, {"name": "service-name", "value": "checkout"}]
        result = run_metric(provider, "result == true", args, SECRETS)
        sent = server.requests[-1]
    assert result.phase == "Successful", result.message
    assert sent.query["service"] == ["checkout"]


@pytest.mark.parametrize("kind", ["prometheus", "web"])
def test_argo_basic_auth_strings_from_secret_arguments(kind: str) -> None:
    args = [
        {"name": "user", "valueFrom": {"secretKeyRef": {"name": "basic", "key": "username"}}},
        {"name": "pass", "valueFrom": {"secretKeyRef": {"name": "basic", "key": "secret"}}},
    ]
    secrets = {("shop", "basic", "username"): "grafana-user", ("shop", "basic", "secret"): "p4ss!"}
    expected = "Basic " + base64.b64encode(b"grafana-user:p4ss!").decode()

    def check(answer: Reply) -> Any:
        return lambda r: answer if r.headers.get("Authorization") == expected else Reply(401, "no")

    block = {"basicAuth": {"username": "{{ args.user }}", "password": "{{ args.pass }}"}}
    with LocalHttpServer(
        {"/api/v1/query": check(vector("1")), "/check": check(Reply(200, {"ok": 1}))}
    ) as server:
        if kind == "prometheus":
            provider = prometheus("up", [server.url()], authentication=block)
        else:
            provider = web(server.url("/check"), jsonPath="$.ok", authentication=block)
        result = run_metric(
            provider, "result[0] == 1" if kind == "prometheus" else "result == 1", args, secrets
        )
    assert result.phase == "Successful", result.message


# --- SigV4 ----------------------------------------------------------------------------------------


def _signature_is_valid(request: Request, secret: str, region: str) -> bool:
    """Recompute the SigV4 signature of a GET the way AWS does, from what arrived."""
    auth = request.headers["Authorization"]
    parts = dict(p.strip().split("=", 1) for p in auth.split(" ", 1)[1].split(","))
    _key_id, day, sig_region, service, _ = parts["Credential"].split("/")
    signed = parts["SignedHeaders"].split(";")
    canonical_query = "&".join(
        sorted(f"{_quote(k)}={_quote(v)}" for k, values in request.query.items() for v in values)
    )
    lowered = {k.lower(): v for k, v in request.headers.items()}
    canonical_headers = "".join(f"{h}:{lowered[h].strip()}\n" for h in signed)
    payload = hashlib.sha256(request.body).hexdigest()
    canonical = "\n".join(
        [
            request.method,
            request.path,
            canonical_query,
            canonical_headers,
            ";".join(signed),
            payload,
        ]
    )
    scope = f"{day}/{sig_region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            lowered["x-amz-date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in (day, sig_region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        sig_region == region
        and service == "aps"
        and hmac.compare_digest(expected, parts["Signature"])
    )


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="-_.~")


def test_prometheus_sigv4_signs_with_the_namespaces_aws_secret() -> None:
    secrets = {
        ("shop", "aws", "AWS_ACCESS_KEY_ID"): "AKIDEXAMPLE",
        ("shop", "aws", "AWS_SECRET_ACCESS_KEY"): "wJalrXUtnFEMI/K7MDENG",
    }
    seen: list[bool] = []

    def answer(request: Request) -> Reply:
        valid = _signature_is_valid(request, "wJalrXUtnFEMI/K7MDENG", "eu-west-1")
        seen.append(valid)
        return vector("1") if valid else Reply(403, {"status": "error", "error": "bad signature"})

    with LocalHttpServer({"/workspaces/ws-1/api/v1/query": answer}) as server:
        provider = prometheus(
            'sum(rate(x{a="b c"}[5m]))',
            [server.url("/workspaces/ws-1")],
            authentication={"sigv4": {"region": "eu-west-1"}},
        )
        result = run_metric(provider, "result[0] == 1", [], secrets)
    assert seen == [True]
    assert result.phase == "Successful", result.message


def test_sigv4_without_credentials_is_an_error_not_the_operators_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDOPERATOR")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-secret")
    monkeypatch.delenv("HERDSMAN_AWS_AMBIENT_CREDENTIALS", raising=False)
    with LocalHttpServer({"/api/v1/query": lambda r: vector("1")}) as server:
        provider = prometheus(
            "up", [server.url()], authentication={"sigv4": {"region": "eu-west-1"}}
        )
        result = run_metric(provider, "result[0] == 1", [], {})
        hits = server.hits("/api/v1/query")
    assert result.phase == "Error"
    assert "HERDSMAN_AWS_AMBIENT_CREDENTIALS" in result.message
    assert hits == 0


def test_sigv4_uses_the_operators_identity_only_when_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDOPERATOR")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-secret")
    monkeypatch.setenv("HERDSMAN_AWS_AMBIENT_CREDENTIALS", "true")
    with LocalHttpServer(
        {
            "/api/v1/query": lambda r: (
                vector("1")
                if _signature_is_valid(r, "operator-secret", "us-east-2")
                else Reply(403, "bad signature")
            )
        }
    ) as server:
        provider = prometheus(
            "up", [server.url()], authentication={"sigv4": {"region": "us-east-2"}}
        )
        result = run_metric(provider, "result[0] == 1", [], {})
    assert result.phase == "Successful", result.message


# --- rangeQuery -----------------------------------------------------------------------------------


def test_range_query_evaluates_argos_time_expressions_and_binds_every_value() -> None:
    def matrix(request: Request) -> Reply:
        series = [
            {"metric": {"pod": "a"}, "values": [[1.7e9, "120"], [1.7e9 + 60, "180"]]},
            {"metric": {"pod": "b"}, "values": [[1.7e9, "900"]]},
        ]
        return Reply(200, {"status": "success", "data": {"resultType": "matrix", "result": series}})

    with LocalHttpServer({"/api/v1/query_range": matrix}) as server:
        provider = prometheus(
            'http_latency_ms{service="{{args.service-name}}"}',
            [server.url()],
            rangeQuery={
                "start": 'now() - duration("{{args.lookback-duration}}")',
                "end": "now()",
                "step": "1m",
            },
        )
        args = [
            {"name": "service-name", "value": "checkout"},
            {"name": "lookback-duration", "value": "5m"},
        ]
        passing = run_metric(provider, "result.all(x, x < 1000)", args, {})
        failing = run_metric(provider, "result.all(x, x < 500)", args, {})
        sent = server.requests[0].query
    assert passing.phase == "Successful", passing.message
    assert passing.value == "[120.0,180.0,900.0]"
    assert failing.phase == "Failed"
    assert sent["query"] == ['http_latency_ms{service="checkout"}']
    assert sent["step"] == ["60"]
    start, end = float(sent["start"][0]), float(sent["end"][0])
    assert end - start == pytest.approx(300, abs=2)
    assert abs(end - datetime.now(UTC).timestamp()) < 30


def test_time_expressions() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    clock = lambda: now  # noqa: E731
    assert evaluate("now()", now=clock) == now
    assert evaluate('now() - duration("1h30m")', now=clock) == now - timedelta(minutes=90)
    assert evaluate('(now() - duration("1h")) + duration("300ms")', now=clock) == now - timedelta(
        seconds=3599.7
    )
    assert evaluate('date("2026-01-01T00:00:00Z")') == datetime(2026, 1, 1, tzinfo=UTC)
    assert go_duration("-5m") == timedelta(minutes=-5)
    for bad in ['duration("5m")', "now", "now() * 2", 'duration("5x")', "now() + now()", ""]:
        with pytest.raises(TimeExpressionError):
            evaluate(bad, now=clock)

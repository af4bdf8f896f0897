"""The New Relic provider: an NRQL query through NerdGraph, New Relic's GraphQL API.

`result` is what Argo binds: the single result row as a map (`result.successRate`,
`result['average.duration']`), or the list of rows when the query returns several. No rows, or
one empty row, is no data (Inconclusive). A GraphQL `errors` answer is an Error.

Credentials: the Secret `profile` (default `newrelic`) in the run's namespace, keys
`personal-api-key` and `account-id`, optionally `region` (`us` or `eu`) and `base-url-nerdgraph`
(a proxy). There is no official Python client for NerdGraph; it is one GraphQL POST (aiohttp).
"""

from __future__ import annotations

from typing import Any

from herdsman.analysis.conditions import Observation
from herdsman.analysis.providers.base import Provider, ProviderContext
from herdsman.analysis.providers.http import (
    ProviderResponseError,
    exchange,
    secret_keys,
    with_retries,
)
from herdsman.api.providers import NewRelicMetric
from herdsman.cluster.budget import Deadline

DEFAULT_SECRET = "newrelic"
ENDPOINTS = {
    "us": "https://api.newrelic.com/graphql",
    "eu": "https://api.eu.newrelic.com/graphql",
}
DEFAULT_TIMEOUT = 5

NRQL = """query ($accountId: Int!, $nrql: Nrql!, $timeout: Seconds) {
  actor { account(id: $accountId) { nrql(query: $nrql, timeout: $timeout) { results } } }
}"""


def results_of(document: Any) -> list[Any]:
    """The `results` of a NerdGraph NRQL answer; GraphQL errors raise."""
    if not isinstance(document, dict):
        raise ProviderResponseError(f"NerdGraph answered {str(document)[:200]}")
    errors = document.get("errors")
    if errors:
        messages = "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
        raise ProviderResponseError(f"NerdGraph: {messages or errors}")
    try:
        results = document["data"]["actor"]["account"]["nrql"]["results"]
    except (KeyError, TypeError) as exc:
        raise ProviderResponseError(f"NerdGraph answered without results: {document}") from exc
    if results is None:
        return []
    if not isinstance(results, list):
        raise ProviderResponseError(f"NerdGraph results are not a list: {results}")
    return results


def as_result(results: list[Any]) -> Observation:
    if not results or (len(results) == 1 and not results[0]):
        return Observation(None, has_data=False)
    return Observation(results[0] if len(results) == 1 else results)


class NewRelicProvider(Provider[NewRelicMetric]):
    key = "new_relic"

    async def observe(
        self, spec: NewRelicMetric, context: ProviderContext, deadline: Deadline
    ) -> Observation:
        keys = await secret_keys(
            context,
            spec.profile or DEFAULT_SECRET,
            ["personal-api-key", "account-id"],
            ["region", "base-url-nerdgraph"],
            deadline=deadline,
        )
        try:
            account = int(keys["account-id"])
        except ValueError as exc:
            raise ProviderResponseError(
                f"account-id {keys['account-id']!r} is not a number"
            ) from exc
        region = keys.get("region", "us").lower()
        if "base-url-nerdgraph" in keys:
            url = keys["base-url-nerdgraph"]
        elif region in ENDPOINTS:
            url = ENDPOINTS[region]
        else:
            raise ProviderResponseError(f"region {region!r}: want us or eu")
        timeout = spec.timeout or DEFAULT_TIMEOUT
        body = {
            "query": NRQL,
            "variables": {"accountId": account, "nrql": spec.query.strip(), "timeout": timeout},
        }
        headers = {"API-Key": keys["personal-api-key"], "Accept": "application/json"}

        async def attempt(attempt_deadline: Deadline) -> Any:
            answer = await exchange(
                "POST",
                url,
                attempt_deadline,
                headers=headers,
                json_body=body,
                request_timeout=timeout + 5,
            )
            return answer.json()

        document = await with_retries(context, deadline, "newrelic NRQL query", attempt)
        return as_result(results_of(document))

"""The specs of the metric providers beyond Prometheus and web, and the auth blocks they share.

Field names and meanings are Argo Rollouts' (v1.9/v1.10 CRDs), so templates port unchanged:
`datadog`, `newRelic`, `cloudWatch`, `wavefront`, `graphite`, `influxdb`, `skywalking`,
`kayenta`, and Prometheus' `rangeQuery` and `authentication.{basicAuth,oauth2,sigv4}` (also the
web provider's `authentication`). Each model is a field of `MetricProvider` in
herdsman.api.analysis; the measuring code lives in herdsman.analysis.providers, one module each.

Credentials never sit in a template. As in Argo, they come from Secrets found by convention
(`datadog`, `newrelic`, `influxdb`, `wavefront-api-tokens`, or the `profile`/`secretRef` named)
— but always in the run's own namespace: a template in one namespace can never use another
namespace's credentials, so there is no cluster-wide credential to leak.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from herdsman.api.base import (
    MAX_LIST,
    MAX_NAME,
    ApiModel,
    Duration,
    IntOrString,
    Name,
    cel,
    validations,
)

MAX_QUERY = 8192
MAX_URL = 2048
MAX_QUERIES = 16
MAX_SCOPES = 8
MAX_DIMENSIONS = 30
"""CloudWatch's own limit of dimensions per metric."""

Text = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Query = Annotated[str, Field(min_length=1, max_length=MAX_QUERY)]
Address = Annotated[str, Field(min_length=1, max_length=MAX_URL)]


# --- authentication (Prometheus and web) ----------------------------------------------------------


class BasicAuthStrings(ApiModel):
    """Argo's `basicAuth`: both values as strings, usually `{{args.NAME}}` of a Secret argument."""

    username: str = Field(..., min_length=1, max_length=MAX_NAME)
    password: str = Field(..., max_length=4096, description="Usually {{args.NAME}} of a Secret.")


class OAuth2ClientCredentials(ApiModel):
    """OAuth2 client credentials: a token from `tokenUrl` is sent as `Authorization: Bearer`."""

    token_url: str = Field(..., min_length=1, max_length=MAX_URL)
    client_id: str = Field(..., min_length=1, max_length=MAX_NAME)
    client_secret: str = Field(
        ..., min_length=1, max_length=4096, description="Usually {{args.NAME}} of a Secret."
    )
    scopes: list[Annotated[str, Field(max_length=MAX_NAME)]] = Field(
        default_factory=list, max_length=MAX_LIST
    )


class Sigv4Config(ApiModel):
    """AWS SigV4 request signing (Amazon Managed Prometheus).

    Credentials come from the Secret `aws` in the run's namespace (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, optionally AWS_SESSION_TOKEN and AWS_REGION); the operator's own
    AWS identity (IRSA, instance profile, `profile`) only where the operator is started with
    HERDSMAN_AWS_AMBIENT_CREDENTIALS=true.
    """

    region: str | None = Field(None, min_length=1, max_length=64)
    profile: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_NAME,
        description="AWS shared-config profile (ambient credentials only).",
    )
    role_arn: str | None = Field(
        None, min_length=1, max_length=2048, description="IAM role assumed before signing."
    )


class WebAuthentication(ApiModel):
    """The web provider's `authentication` (Argo's block; oauth2 is the form Argo documents)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "[has(self.basicAuth), has(self.oauth2), has(self.sigv4)].filter(x, x).size() == 1",
                "authentication: set exactly one of basicAuth, oauth2, sigv4",
            )
        )
    )

    basic_auth: BasicAuthStrings | None = None
    oauth2: OAuth2ClientCredentials | None = None
    sigv4: Sigv4Config | None = None


class PrometheusRangeQuery(ApiModel):
    """A range query instead of an instant one (Argo's `rangeQuery`).

    `start` and `end` are Argo's time expressions: `now()`, `duration("5m")`, `date("<RFC 3339>")`
    combined with + and -, e.g. `now() - duration("{{args.lookback}}")`.
    """

    start: str = Field(
        'now() - duration("5m")', min_length=1, max_length=MAX_NAME, description="Default 5m ago."
    )
    end: str = Field("now()", min_length=1, max_length=MAX_NAME, description="Default now().")
    step: Duration = Field("1m", description="Resolution, e.g. 30s, 1m.")


# --- Datadog --------------------------------------------------------------------------------------


class DatadogSecretRef(ApiModel):
    name: Name = Field(..., description="Secret with api-key, app-key and optionally address.")
    namespaced: bool = Field(
        False,
        description="Argo: read it in the template's namespace. Herdsman always reads it in the run's namespace.",
    )


DatadogAggregator = Literal[
    "avg", "min", "max", "sum", "last", "percentile", "mean", "l2norm", "area"
]


class DatadogMetric(ApiModel):
    """A Datadog metrics query (v1 `/api/v1/query` or v2 `/api/v2/query/scalar`)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.query) != has(self.queries)",
                "set exactly one of query or queries",
                ".query",
            ),
            cel(
                "self.apiVersion == 'v2' || (!has(self.queries) && !has(self.formula)"
                " && !has(self.aggregator))",
                "queries, formula and aggregator need apiVersion v2",
                ".apiVersion",
            ),
            cel("!has(self.formula) || has(self.queries)", "a formula needs queries", ".formula"),
            cel(
                "!has(self.queries) || size(self.queries) == 1 || has(self.formula)",
                "several queries need a formula that combines them",
                ".formula",
            ),
        )
    )

    api_version: Literal["v1", "v2"] = Field("v1", description="Datadog's API version.")
    interval: Duration = Field(
        "5m", description="The time window queried, ending now (not the polling interval)."
    )
    query: Query | None = None
    queries: dict[str, Query] | None = Field(
        None,
        description="v2: named queries, combined by `formula`.",
        json_schema_extra={"maxProperties": MAX_QUERIES},
    )
    formula: str | None = Field(None, min_length=1, max_length=MAX_QUERY)
    aggregator: DatadogAggregator | None = Field(
        None, description="v2: how the window reduces to one value (default last)."
    )
    request_timeout: Duration = Field("10s", description="Timeout of one request to Datadog.")
    secret_ref: DatadogSecretRef | None = Field(
        None, description="Credentials; default: the Secret `datadog`."
    )


# --- New Relic ------------------------------------------------------------------------------------


class NewRelicMetric(ApiModel):
    """An NRQL query through New Relic's NerdGraph API."""

    profile: Name | None = Field(
        None,
        description="Secret with personal-api-key, account-id, optionally region and"
        " base-url-nerdgraph; default `newrelic`.",
    )
    query: Query
    timeout: int | None = Field(None, ge=1, le=120, description="NRQL timeout in seconds.")


# --- CloudWatch -----------------------------------------------------------------------------------


class CloudWatchDimension(ApiModel):
    name: Text
    value: str = Field(..., min_length=1, max_length=1024)


class CloudWatchMetricRef(ApiModel):
    namespace: str | None = Field(None, min_length=1, max_length=255)
    metric_name: str = Field(..., min_length=1, max_length=255)
    dimensions: list[CloudWatchDimension] = Field(default_factory=list, max_length=MAX_DIMENSIONS)


class CloudWatchMetricStat(ApiModel):
    metric: CloudWatchMetricRef
    period: IntOrString = Field(..., description="Seconds per data point.")
    stat: str = Field(..., min_length=1, max_length=64, description="e.g. Sum, Average, p99.")
    unit: str | None = Field(None, min_length=1, max_length=64)


class CloudWatchMetricDataQuery(ApiModel):
    """One MetricDataQuery of GetMetricData (AWS' own field names, camelCased)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.expression) != has(self.metricStat)",
                "set exactly one of expression or metricStat",
                ".expression",
            )
        )
    )

    id: str = Field(..., pattern=r"^[a-z][a-zA-Z0-9_]*$", max_length=255)
    expression: str | None = Field(None, min_length=1, max_length=2048)
    label: str | None = Field(None, max_length=MAX_NAME)
    metric_stat: CloudWatchMetricStat | None = None
    period: IntOrString | None = None
    return_data: bool | None = None


class CloudWatchMetric(ApiModel):
    """GetMetricData over the window `interval` ending now.

    Credentials: the Secret `aws` in the run's namespace (see Sigv4Config), or the operator's
    AWS identity where HERDSMAN_AWS_AMBIENT_CREDENTIALS=true.
    """

    interval: Duration | None = Field(None, description="The window queried (default 5m).")
    metric_data_queries: list[CloudWatchMetricDataQuery] = Field(
        ..., min_length=1, max_length=MAX_QUERIES
    )


# --- Wavefront, Graphite, InfluxDB, SkyWalking ----------------------------------------------------


class WavefrontMetric(ApiModel):
    """A Wavefront (Tanzu Observability) query; the token is the key `address` of the Secret
    `wavefront-api-tokens`."""

    address: Address = Field(..., description="e.g. example.wavefront.com (https unless a scheme).")
    query: Query


class GraphiteMetric(ApiModel):
    """A Graphite render API query; `query` is its parameters, e.g. `target=...&from=-5min`."""

    address: Address
    query: Query


class InfluxdbMetric(ApiModel):
    """A Flux query; address, authToken and org come from the Secret `profile` (default influxdb)."""

    profile: Name | None = None
    query: Query


class SkyWalkingMetric(ApiModel):
    """A GraphQL query to SkyWalking's OAP server; `$duration` is the window `interval` to now."""

    address: Address
    query: Query
    interval: Duration | None = Field(None, description="The window queried (default 5m).")


# --- Kayenta --------------------------------------------------------------------------------------


class KayentaScopeDetail(ApiModel):
    scope: str = Field(..., min_length=1, max_length=4096)
    region: str = Field(..., max_length=MAX_NAME)
    step: int = Field(..., ge=1, description="Seconds between data points.")
    start: str | None = Field(None, max_length=64, description="ISO-8601; default: see lookback.")
    end: str | None = Field(None, max_length=64, description="ISO-8601; default: now.")


class KayentaScope(ApiModel):
    name: Text
    control_scope: KayentaScopeDetail
    experiment_scope: KayentaScopeDetail


class KayentaThreshold(ApiModel):
    pass_: int = Field(..., alias="pass", ge=0, le=100)
    marginal: int = Field(..., ge=0, le=100)


class KayentaMetric(ApiModel):
    """A canary judgement delegated to a Kayenta service: its score against `threshold`."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.threshold.marginal <= self.threshold.pass",
                "threshold.marginal cannot be above threshold.pass",
                ".threshold",
            )
        )
    )

    address: Address
    application: Text
    canary_config_name: Text
    configuration_account_name: Text
    metrics_account_name: Text
    storage_account_name: Text
    threshold: KayentaThreshold
    scopes: list[KayentaScope] = Field(..., min_length=1, max_length=MAX_SCOPES)
    lookback: bool = Field(
        False, description="Scopes without a start begin when the run started (else now - step)."
    )


# --- which providers can feed the judge -----------------------------------------------------------

JUDGED_PROVIDERS: dict[str, str] = {
    "prometheus": "self.provider.prometheus.query.contains('{{group}}')",
    "datadog": "has(self.provider.datadog.query)"
    " && self.provider.datadog.query.contains('{{group}}')",
    "cloudWatch": "self.provider.cloudWatch.metricDataQueries.exists(q, has(q.metricStat)"
    " && q.metricStat.metric.dimensions.exists(d, d.value.contains('{{group}}')))",
    "wavefront": "self.provider.wavefront.query.contains('{{group}}')",
    "graphite": "self.provider.graphite.query.contains('{{group}}')",
    "influxdb": "self.provider.influxdb.query.contains('{{group}}')",
}
"""Providers whose `samples()` return a series, and the rule that their query selects the
server group being sampled with `{{group}}` (else the judge would compare a series with itself)."""


def judged_query_rule(name: str) -> dict[str, str]:
    """A judged metric of provider `name` must name `{{group}}` where its query selects."""
    where = {
        "datadog": ".provider.datadog.query",
        "cloudWatch": ".provider.cloudWatch.metricDataQueries",
    }.get(name, f".provider.{name}.query")
    message = "a judged metric's query must select the server group with {{group}}"
    if name == "datadog":
        message += " (a single `query`: the judge compares one series per group)"
    if name == "cloudWatch":
        message += " (in a metricStat dimension's value)"
    return cel(
        f"!has(self.judge) || !has(self.provider.{name}) || ({JUDGED_PROVIDERS[name]})",
        message,
        where,
    )

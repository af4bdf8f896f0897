"""AnalysisTemplate and ClusterAnalysisTemplate: what to measure (the run, what was measured,
is in analysis_run.py; the {{args.*}} fields in placeholders.py).

Field names follow Argo Rollouts' analysis API wherever the concept is the same (metrics,
interval, count, initialDelay, failureLimit, inconclusiveLimit, consecutiveErrorLimit,
successCondition, failureCondition, dryRun, provider.prometheus / provider.web, args with
valueFrom.secretKeyRef), so templates port with a changed apiVersion. Conditions are CEL or
Argo's expr language (a metric's `conditionLanguage`, detected when absent; see
herdsman.analysis.conditions).

A run copies the templates' metrics (merged, names unique) and the args, so it keeps measuring
the same thing if a template changes under it. Secret arguments stay references: their values
are read at measurement time and never written into any object.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_snake

from herdsman.api.analysis_ref import (
    AnalysisTemplateRef,
    DryRunMetric,
    MeasurementRetention,
    SecretKeyRef,
)
from herdsman.api.base import (
    API_VERSION,
    MAX_LIST,
    MAX_NAME,
    ApiModel,
    ObjectMeta,
    ShortName,
    cel,
    validations,
)
from herdsman.api.job import JobMetric
from herdsman.api.judge import JudgeSpec, ScoringSpec
from herdsman.api.placeholders import (
    Count,
    Limit,
    SuccessLimit,
    TemplatedDuration,
)
from herdsman.api.providers import (
    JUDGED_PROVIDERS,
    BasicAuthStrings,
    CloudWatchMetric,
    DatadogMetric,
    GraphiteMetric,
    InfluxdbMetric,
    KayentaMetric,
    NewRelicMetric,
    OAuth2ClientCredentials,
    PrometheusRangeQuery,
    Sigv4Config,
    SkyWalkingMetric,
    WavefrontMetric,
    WebAuthentication,
    judged_query_rule,
)

MAX_METRICS = 32
MAX_CONDITION = 4096
"""Also herdsman.cel's expression length limit: the API server refuses what we would refuse."""
MAX_QUERY = 8192
MAX_URL = 2048
MAX_ADDRESSES = 8
MAX_HEADERS = 16
MEASUREMENT_HISTORY = 10
"""Measurements kept per metric in a run's status; older ones survive only in the counters."""

Url = Annotated[str, Field(min_length=1, max_length=MAX_URL)]

AnalysisPhase = Literal["Pending", "Running", "Successful", "Failed", "Error", "Inconclusive"]
MeasurementPhase = Literal["Successful", "Failed", "Inconclusive", "Error"]
ConditionLanguage = Literal["CEL", "Argo"]
TERMINAL_PHASES: frozenset[str] = frozenset({"Successful", "Failed", "Error", "Inconclusive"})


def _at_most_one(fields: list[str], what: str) -> dict[str, str]:
    present = ", ".join(f"has(self.{f})" for f in fields)
    return cel(
        f"[{present}].filter(x, x).size() <= 1", f"{what}: set at most one of {', '.join(fields)}"
    )


def _exactly_one(fields: list[str], what: str) -> dict[str, str]:
    present = ", ".join(f"has(self.{f})" for f in fields)
    return cel(
        f"[{present}].filter(x, x).size() == 1", f"{what}: set exactly one of {', '.join(fields)}"
    )


# --- arguments ------------------------------------------------------------------------------------


class ArgumentValueFrom(ApiModel):
    secret_key_ref: SecretKeyRef = Field(
        ..., description="A key of a Secret in the run's namespace, read at measurement time."
    )


class Argument(ApiModel):
    """A template argument: a default `value`, a Secret reference, or neither (required)."""

    model_config = ConfigDict(
        json_schema_extra=validations(_at_most_one(["value", "valueFrom"], "argument"))
    )

    name: ShortName
    value: str | None = Field(None, max_length=4096)
    value_from: ArgumentValueFrom | None = None


# --- providers ------------------------------------------------------------------------------------


class Header(ApiModel):
    """An HTTP header; a value with credentials should come from a Secret."""

    model_config = ConfigDict(
        json_schema_extra=validations(_exactly_one(["value", "valueFrom"], "header"))
    )

    key: str = Field(..., min_length=1, max_length=256)
    value: str | None = Field(
        None, max_length=4096, description="May use {{args.NAME}} placeholders."
    )
    value_from: ArgumentValueFrom | None = None


class BasicAuth(ApiModel):
    username: str = Field(..., min_length=1, max_length=MAX_NAME)
    password: SecretKeyRef


class PrometheusAuthentication(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            _exactly_one(["bearerToken", "basic", "basicAuth", "oauth2", "sigv4"], "authentication")
        )
    )

    bearer_token: SecretKeyRef | None = Field(
        None, description="Sent as `Authorization: Bearer <token>`."
    )
    basic: BasicAuth | None = Field(None, description="Username, and the password from a Secret.")
    basic_auth: BasicAuthStrings | None = Field(
        None, description="Argo's form: both as strings, e.g. {{args.NAME}} of Secret arguments."
    )
    oauth2: OAuth2ClientCredentials | None = None
    sigv4: Sigv4Config | None = Field(
        None, description="Sign requests with AWS SigV4 (Amazon Managed Prometheus)."
    )


class PrometheusMetric(ApiModel):
    """A PromQL query against one Prometheus (or several, tried in order)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.address) != (has(self.addresses) && size(self.addresses) > 0)",
                "set exactly one of address or addresses",
                ".addresses",
            ),
            cel("!(self.insecure && has(self.ca))", "insecure and ca exclude each other", ".ca"),
        )
    )

    address: str | None = Field(
        None, min_length=1, max_length=MAX_URL, description="Argo's single address."
    )
    addresses: list[Url] = Field(
        default_factory=list,
        max_length=MAX_ADDRESSES,
        description="Prometheus base URLs tried in order; the next is asked when one fails.",
    )
    query: str = Field(
        ...,
        min_length=1,
        max_length=MAX_QUERY,
        description="PromQL; {{args.NAME}}, {{rollout.*}} and, for judged metrics, {{group}} are replaced.",
    )
    timeout: int | None = Field(
        None,
        ge=1,
        le=300,
        description="Seconds one query may take; the reconcile's budget may cut it shorter.",
    )
    range_query: PrometheusRangeQuery | None = Field(
        None, description="Query a time range: `result` is every value of every series."
    )
    headers: list[Header] = Field(default_factory=list, max_length=MAX_HEADERS)
    authentication: PrometheusAuthentication | None = None
    insecure: bool = Field(False, description="Skip TLS certificate verification.")
    ca: SecretKeyRef | None = Field(
        None, description="PEM CA bundle that signs the server's certificate."
    )

    def endpoints(self) -> list[str]:
        return [self.address] if self.address else list(self.addresses)


class WebMetric(ApiModel):
    """An HTTP endpoint whose (JSON) answer is the measurement."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            _at_most_one(["body", "jsonBody"], "web"),
            cel(
                "self.method != 'GET' || (!has(self.body) && !has(self.jsonBody))",
                "a GET request has no body",
                ".method",
            ),
        )
    )

    url: str = Field(..., min_length=1, max_length=MAX_URL, description="May use placeholders.")
    method: Literal["GET", "POST", "PUT"] = "GET"
    headers: list[Header] = Field(default_factory=list, max_length=MAX_HEADERS)
    body: str | None = Field(
        None, max_length=65536, description="Request body; may use placeholders."
    )
    json_body: dict[str, Any] | None = Field(None, description="Request body as JSON (sent as is).")
    json_path: str | None = Field(
        None,
        max_length=1024,
        description="JSONPath into the answer, e.g. {$.data.ok} or $.data.ok; absent: the whole answer.",
    )
    timeout_seconds: int = Field(10, ge=1, le=300, description="Seconds one request may take.")
    insecure: bool = Field(False, description="Skip TLS certificate verification.")
    authentication: WebAuthentication | None = None


PROVIDER_FIELDS = [
    "prometheus",
    "web",
    "datadog",
    "newRelic",
    "cloudWatch",
    "wavefront",
    "graphite",
    "influxdb",
    "skywalking",
    "kayenta",
    "job",
]


class MetricProvider(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(_exactly_one(PROVIDER_FIELDS, "provider"))
    )

    prometheus: PrometheusMetric | None = None
    web: WebMetric | None = None
    datadog: DatadogMetric | None = None
    new_relic: NewRelicMetric | None = None
    cloud_watch: CloudWatchMetric | None = None
    wavefront: WavefrontMetric | None = None
    graphite: GraphiteMetric | None = None
    influxdb: InfluxdbMetric | None = None
    skywalking: SkyWalkingMetric | None = None
    kayenta: KayentaMetric | None = None
    job: JobMetric | None = None

    @property
    def kind(self) -> str:
        """The attribute of the provider that is set, e.g. `new_relic` for `newRelic` (the
        registry key in herdsman.analysis.providers)."""
        for name in PROVIDER_FIELDS:
            if getattr(self, to_snake(name)) is not None:
                return to_snake(name)
        raise ValueError("provider: no provider set")


# --- metrics and templates ------------------------------------------------------------------------


class Metric(ApiModel):
    """One thing to measure, how often, and what counts as good."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.count) || type(self.count) == string || self.count <= 1"
                " || has(self.interval)",
                "a count above 1 needs an interval",
                ".interval",
            ),
            cel(
                "!has(self.judge) || (!has(self.successCondition) && !has(self.failureCondition))",
                "a judged metric takes no conditions: the judge decides",
                ".judge",
            ),
            cel(
                "!has(self.provider.kayenta)"
                " || (!has(self.successCondition) && !has(self.failureCondition))",
                "a kayenta metric takes no conditions: its threshold decides",
                ".provider.kayenta",
            ),
            cel(
                "!has(self.judge) || "
                + " || ".join(f"has(self.provider.{name})" for name in JUDGED_PROVIDERS),
                "a judged metric needs a provider that returns series: "
                + ", ".join(JUDGED_PROVIDERS),
                ".provider",
            ),
            *(judged_query_rule(name) for name in JUDGED_PROVIDERS),
        )
    )

    name: ShortName
    interval: TemplatedDuration | None = Field(
        None, description="Time between measurements, e.g. 30s or {{args.NAME}}."
    )
    initial_delay: TemplatedDuration | None = Field(
        None, description="Wait this long after the run starts."
    )
    count: Count | None = Field(
        None,
        description="Measurements to take. Absent: one without an interval, unbounded with one.",
    )
    failure_limit: Limit = Field(
        0, description="The metric fails when more measurements than this fail; -1: never."
    )
    inconclusive_limit: Limit = Field(
        0,
        description="The metric is inconclusive when more measurements than this are; -1: never.",
    )
    consecutive_error_limit: Limit = Field(
        4,
        description="The metric errs when more measurements than this in a row could not be "
        "taken; -1: never.",
    )
    consecutive_success_limit: SuccessLimit = Field(
        0,
        description="When above 0: the metric is Successful as soon as this many measurements in "
        "a row were, and Inconclusive if its count runs out first.",
    )
    success_condition: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_CONDITION,
        description="A condition over `result` (CEL or Argo's expr, see conditionLanguage).",
    )
    failure_condition: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_CONDITION,
        description="A condition over `result` (CEL or Argo's expr, see conditionLanguage).",
    )
    condition_language: ConditionLanguage | None = Field(
        None,
        description="CEL (native) or Argo (Argo Rollouts' expr). Absent: Argo when the condition "
        "compiles as expr, else CEL. Neither condition: every measurement taken is Successful.",
    )
    dry_run: bool = Field(
        False, description="Measure and report, but never let this metric decide the run."
    )
    judge: JudgeSpec | None = Field(
        None, description="Compare canary with baseline instead of conditions."
    )
    provider: MetricProvider


def unique_names(list_field: str, key: str, what: str) -> dict[str, str]:
    """A CEL rule: the items of `list_field` have distinct `key`s (templates and runs alike)."""
    return cel(
        f"!has(self.{list_field}) ||"
        f" self.{list_field}.all(a, self.{list_field}.filter(b, b.{key} == a.{key}).size() == 1)",
        f"{what} names must be unique",
        f".{list_field}",
    )


class AnalysisTemplateSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            unique_names("metrics", "name", "metric"),
            unique_names("args", "name", "argument"),
            cel(
                "!has(self.dryRun) || has(self.templates) || self.dryRun.all(d, d.metricName == '*'"
                " || (has(self.metrics) && self.metrics.exists(m, m.name == d.metricName)))",
                "dryRun names a metric that does not exist",
                ".dryRun",
            ),
            cel(
                "(has(self.metrics) && size(self.metrics) > 0)"
                " || (has(self.templates) && size(self.templates) > 0)",
                "set metrics, templates, or both",
                ".metrics",
            ),
        )
    )

    args: list[Argument] = Field(default_factory=list, max_length=MAX_LIST)
    metrics: list[Metric] = Field(default_factory=list, max_length=MAX_METRICS)
    templates: list[AnalysisTemplateRef] = Field(
        default_factory=list,
        max_length=16,
        description="Other templates whose metrics, args, dryRun and measurementRetention this "
        "one includes (Argo's template composition), resolved when a run is created.",
    )
    dry_run: list[DryRunMetric] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="Metric names ('*': all) that never decide.",
    )
    measurement_retention: list[MeasurementRetention] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description=f"Measurements kept in the run's status per metric (default {MEASUREMENT_HISTORY}).",
    )
    scoring: ScoringSpec | None = Field(
        None, description="How judged metrics combine into a score."
    )


class AnalysisTemplate(ApiModel):
    """An AnalysisTemplate or a ClusterAnalysisTemplate (same spec)."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = API_VERSION
    kind: Literal["AnalysisTemplate", "ClusterAnalysisTemplate"] = "AnalysisTemplate"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AnalysisTemplateSpec

    @classmethod
    def from_body(cls, body: Any) -> AnalysisTemplate:
        return cls.model_validate(dict(body))

"""What a metric provider is: one class, one file, one registry entry.

A provider turns its (already templated) spec into either an `Observation` for the success and
failure conditions, or, for judged metrics, the samples of one server group over a window. It
gets a deadline it must not outlive, and reaches Secrets only through the `SecretResolver` it
is handed, so unit tests need no cluster and no provider ever writes a Secret value anywhere.

Providers raise on failure; the measuring layer turns any exception into an `Error`
measurement. Transport failures should be raised as TimeoutError / ConnectionError /
`herdsman.cluster.retry.HttpStatusError` so the shared retry policy classifies them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from herdsman.analysis.conditions import Observation, Outcome
from herdsman.api.analysis import Header
from herdsman.api.analysis_ref import SecretKeyRef
from herdsman.api.base import ApiModel
from herdsman.cluster.budget import AccessPolicy, Deadline
from herdsman.cluster.retry import NO_HOOKS, RetryHooks

S = TypeVar("S", bound=ApiModel)


class SecretResolver(Protocol):
    """Reads one key of one Secret. The operator's implementation goes to the API server."""

    async def get(self, namespace: str, ref: SecretKeyRef, *, deadline: Deadline) -> str: ...


class JobClient(Protocol):
    """Reads, creates and deletes batch/v1 Jobs (the Job provider's only way to the cluster)."""

    async def get_job(
        self, namespace: str, name: str, *, deadline: Deadline
    ) -> dict[str, Any] | None: ...

    async def create_job(
        self, namespace: str, body: dict[str, Any], *, deadline: Deadline
    ) -> dict[str, Any]: ...


class MeasurementInProgress(Exception):
    """The measurement was started (a Job runs) and has no verdict yet: look again later.

    `handle` names what runs (the Job), for the run's status."""

    def __init__(self, handle: str, message: str = "") -> None:
        self.handle = handle
        super().__init__(message or f"{handle} is running")


class SecretNotFound(LookupError):
    """The Secret or its key does not exist (a resolver may raise this)."""


@dataclass(frozen=True)
class ProviderContext:
    """What every provider call gets besides its spec."""

    namespace: str
    """Namespace of the run; Secrets are looked up here."""
    secrets: SecretResolver
    policy: AccessPolicy
    metric: str = ""
    """The metric's name, for messages and retry telemetry."""
    hooks: RetryHooks = NO_HOOKS
    interval: float | None = None
    """Seconds between the metric's measurements, if it has an interval (Kayenta's window)."""
    run_started: datetime | None = None
    """When the run started (Kayenta's `lookback`)."""
    jobs: JobClient | None = None
    """The cluster's Jobs, for the Job provider (None where there is no cluster)."""
    run_name: str = ""
    run_uid: str = ""
    measurement: int = 1
    """The number of this measurement of the metric (1 for the first), errors included."""
    in_progress: str | None = None
    """What the metric's measurement in progress started (a Job's name), if any."""

    async def secret(self, ref: SecretKeyRef, deadline: Deadline) -> str:
        return await self.secrets.get(self.namespace, ref, deadline=deadline)


@dataclass(frozen=True)
class Window:
    """The time range a judged metric's samples cover."""

    start: datetime
    end: datetime
    step_seconds: float


@dataclass(frozen=True)
class Samples:
    """One server group's values over a window, each with its time (Unix seconds)."""

    timestamps: list[float]
    values: list[float]

    @classmethod
    def of(cls, points: Iterable[tuple[Any, Any]]) -> Samples:
        """From (time, value) pairs as an API answers them: the time a datetime, Unix seconds
        or milliseconds; values that are missing, not numbers or NaN are dropped (no data is
        not a zero). Oldest first."""
        kept: list[tuple[float, float]] = []
        for when, value in points:
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isnan(number):
                continue
            stamp = when.timestamp() if isinstance(when, datetime) else float(when)
            kept.append((stamp / 1000 if stamp > 1e11 else stamp, number))
        kept.sort()
        return cls([t for t, _ in kept], [v for _, v in kept])


class UnsupportedMeasurement(NotImplementedError):
    """The provider cannot take this kind of measurement (e.g. samples for the judge)."""


class Provider(ABC, Generic[S]):
    """A source of measurements. Subclasses set `key` (the field name under `provider:`)."""

    key: ClassVar[str]

    @abstractmethod
    async def observe(self, spec: S, context: ProviderContext, deadline: Deadline) -> Observation:
        """One value for the conditions."""

    async def samples(
        self, spec: S, context: ProviderContext, deadline: Deadline, window: Window
    ) -> Samples:
        """The values of one server group over `window`, for the judge."""
        raise UnsupportedMeasurement(f"the {self.key} provider cannot feed the judge")

    def outcome(self, spec: S, observation: Observation) -> Outcome | None:
        """The phase, for a provider that decides it itself (Kayenta's thresholds); None (the
        default) leaves it to the metric's conditions."""
        return None


async def resolve_headers(
    headers: list[Header], context: ProviderContext, deadline: Deadline
) -> dict[str, str]:
    """Header values, those from Secrets read through the context."""
    resolved: dict[str, str] = {}
    for header in headers:
        if header.value_from is not None:
            resolved[header.key] = await context.secret(header.value_from.secret_key_ref, deadline)
        else:
            resolved[header.key] = header.value or ""
    return resolved

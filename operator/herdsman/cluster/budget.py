"""Time budgets for outbound calls: one deadline per reconcile, carved smaller for every call.

A reconcile starts with `Deadline(policy.reconcile_budget)`. Everything it calls gets a
`child()` of it: never longer than what the parent has left, minus a small margin the parent
keeps for itself (to record a timeout as a result instead of being cut off mid-write). So the
further downstream a call is, the shorter its deadline, and no call can outlive the reconcile.

The clock is injectable (a `Callable[[], float]` of seconds, monotonic) so tests run on
simulated time.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

Clock = Callable[[], float]

DEFAULT_MARGIN = 0.05


class DeadlineExceeded(TimeoutError):
    """Raised by `Deadline.check()` when nothing is left; a TimeoutError, so callers that
    already treat timeouts as retryable or as measurement errors need no new case."""


class Deadline:
    """A point in (monotonic) time by which a piece of work must be finished."""

    __slots__ = ("_at", "_clock", "margin")

    def __init__(
        self, seconds: float, *, clock: Clock = time.monotonic, margin: float = DEFAULT_MARGIN
    ) -> None:
        if math.isnan(seconds):
            raise ValueError("a deadline needs a number of seconds, not NaN")
        self._clock = clock
        self._at = clock() + max(0.0, seconds)
        self.margin = max(0.0, margin)

    @classmethod
    def at(
        cls, when: float, *, clock: Clock = time.monotonic, margin: float = DEFAULT_MARGIN
    ) -> Deadline:
        """A deadline at an absolute reading of `clock`."""
        deadline = cls(0.0, clock=clock, margin=margin)
        deadline._at = when
        return deadline

    @property
    def when(self) -> float:
        """The clock reading at which this deadline expires."""
        return self._at

    @property
    def clock(self) -> Clock:
        return self._clock

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._at - self._clock())

    @property
    def expired(self) -> bool:
        return self._at - self._clock() <= 0.0

    def postpone(self, seconds: float) -> None:
        """Move the deadline later: for time spent in our own queue, which is no measure of the
        server (the pass and its later calls keep the budget they had when the wait began)."""
        self._at += max(0.0, seconds)

    def child(self, cap: float | None = None, *, margin: float | None = None) -> Deadline:
        """A deadline for a call made on behalf of this one.

        It expires after at most `cap` seconds, and in any case `self.margin` seconds before
        this deadline does, so the parent always has a moment to handle the child's timeout.
        With less than the margin left the child is born expired.
        """
        now = self._clock()
        available = self._at - now - self.margin
        seconds = available if cap is None else min(cap, available)
        child = Deadline.at(now + max(0.0, seconds), clock=self._clock, margin=self.margin)
        if margin is not None:
            child.margin = max(0.0, margin)
        return child

    def check(self, what: str = "operation") -> None:
        """Raise DeadlineExceeded if the deadline has passed."""
        if self.expired:
            raise DeadlineExceeded(f"{what}: deadline exceeded")

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.3f}s)"


@dataclass(frozen=True)
class AccessPolicy:
    """How outbound calls are bounded and retried. Every field is in seconds unless it says.

    The defaults suit a reconcile loop that requeues itself: a reconcile gives up well before
    Kopf's own handler timeouts, a single call never takes more than a third of the budget, and
    a few retries with backoff absorb a blip without turning an outage into a retry storm.
    """

    reconcile_budget: float = 20.0
    """Total time one reconcile may spend on outbound calls."""
    call_timeout: float = 5.0
    """Cap on one attempt of one call (Kubernetes API, Prometheus, web)."""
    measurement_timeout: float = 10.0
    """Cap on one measurement, all its attempts included."""
    attempts: int = 3
    """Attempts per call; at least one per configured endpoint, so failover always happens."""
    backoff_base: float = 0.2
    """First backoff; doubles with every retry of the same endpoint."""
    backoff_cap: float = 2.0
    """Longest backoff between two attempts."""
    jitter: float = 0.5
    """Fraction (0..1) of each backoff that is random, so callers that failed together do not
    retry together."""
    max_retry_after: float = 10.0
    """Longest server-requested wait (Retry-After) honoured; a longer one ends the retries."""
    margin: float = DEFAULT_MARGIN
    """Time a parent deadline keeps back from each child it carves."""

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not isinstance(value, int | float) or math.isnan(value) or value < 0:
                raise ValueError(f"AccessPolicy.{spec.name} must be a non-negative number")
        if self.attempts < 1:
            raise ValueError("AccessPolicy.attempts must be at least 1")
        if self.jitter > 1:
            raise ValueError("AccessPolicy.jitter is a fraction between 0 and 1")

    def reconcile_deadline(self, *, clock: Clock = time.monotonic) -> Deadline:
        return Deadline(self.reconcile_budget, clock=clock, margin=self.margin)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, prefix: str = "HERDSMAN_ACCESS_"
    ) -> AccessPolicy:
        """Defaults overridden by environment variables, e.g. HERDSMAN_ACCESS_CALL_TIMEOUT=3."""
        env = os.environ if environ is None else environ
        overrides: dict[str, Any] = {}
        for spec in fields(cls):
            raw = env.get(prefix + spec.name.upper())
            if raw is None or raw.strip() == "":
                continue
            try:
                overrides[spec.name] = int(raw) if spec.name == "attempts" else float(raw)
            except ValueError:
                raise ValueError(f"{prefix}{spec.name.upper()}={raw!r} is not a number") from None
        return replace(cls(), **overrides)

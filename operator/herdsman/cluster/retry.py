"""Bounded retries for outbound calls, composed with the deadline budget.

`call_with_retries(fn, endpoints, deadline=...)` calls `fn(endpoint, attempt_deadline)` until it
succeeds, and gives up at the first of:

- an error that is not worth retrying (a 4xx answer, a bad request): re-raised as it is, so the
  caller can act on a 404 or a 409 exactly as without retries;
- the attempts are used up (`AccessPolicy.attempts`, at least one per endpoint);
- the next wait would reach the deadline, or the server asks (Retry-After) for a longer wait
  than fits in it or than `AccessPolicy.max_retry_after`.

The last two raise `GaveUp` (a TimeoutError when the deadline was the reason) with the last
error as its cause. Attempts rotate through the endpoints; a not-yet-tried endpoint is tried at
once (the failure was the other endpoint's), and only a second attempt at the same endpoint
waits for its backoff or its Retry-After. Backoff is exponential, capped and jittered.

The library is generic: an endpoint is anything (a URL, a client), `fn` is any coroutine, and
errors are classified by `classify` (HTTP-like errors by a `status` attribute, so the
Kubernetes client's ApiException works unchanged). Hooks let telemetry count retries and
expiries without this module knowing about metrics.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from herdsman.cluster.budget import AccessPolicy, Deadline

T = TypeVar("T")
E = TypeVar("E")


class HttpStatusError(Exception):
    """A non-success HTTP answer, with what a retry decision needs.

    Providers raise this instead of their HTTP library's own error so that one classifier
    serves them all.
    """

    def __init__(
        self, status: int, message: str = "", *, retry_after: str | None = None, url: str = ""
    ) -> None:
        self.status = status
        self.headers: dict[str, str] = {"Retry-After": retry_after} if retry_after else {}
        self.url = url
        text = f"HTTP {status}"
        if url:
            text += f" from {url}"
        if message:
            text += f": {message}"
        super().__init__(text)


@dataclass(frozen=True)
class Verdict:
    """What `classify` says about one failed attempt."""

    retryable: bool
    retry_after: float | None = None
    """Seconds the server asked us to wait before asking again, if it said."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date. None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def _header(headers: Any, name: str) -> str | None:
    if not isinstance(headers, Mapping) and not hasattr(headers, "items"):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return str(value)
    return None


def retryable_status(status: int) -> bool:
    """429 and 408 (ask again later), and server errors except 501/505 (will never work)."""
    return status in (408, 429) or (500 <= status <= 599 and status not in (501, 505))


def classify(exc: BaseException) -> Verdict:
    """The default classification: transport failures and overload are retried, the rest not.

    Retried: timeouts, connection errors, and answers with a retryable `status` (see
    `retryable_status`), honouring their Retry-After header. Anything with a `status` outside
    that set (a 4xx, an unprocessable query) fails at once; so does every other exception, and
    cancellation is never swallowed.
    """
    if not isinstance(exc, Exception):
        return Verdict(retryable=False)
    status = getattr(exc, "status", None)
    if isinstance(status, int) and not isinstance(status, bool) and status >= 100:
        if not retryable_status(status):
            return Verdict(retryable=False)
        retry_after = parse_retry_after(_header(getattr(exc, "headers", None), "Retry-After"))
        return Verdict(retryable=True, retry_after=retry_after)
    if isinstance(exc, TimeoutError | ConnectionError):
        return Verdict(retryable=True)
    return Verdict(retryable=False)


@dataclass(frozen=True)
class RetryEvent:
    """One failed attempt that is about to be retried."""

    call: str
    attempt: int
    endpoint: str
    error: BaseException
    wait: float


class GaveUp(TimeoutError):
    """Retries ended before a success. `reason` says why; `last` is the last attempt's error.

    A TimeoutError so that code treating timeouts as "no answer in time" handles it as such.
    """

    def __init__(self, call: str, reason: str, attempts: int, last: BaseException | None) -> None:
        self.call = call
        self.reason = reason
        self.attempts = attempts
        self.last = last
        detail = f": {last}" if last is not None else ""
        plural = "" if attempts == 1 else "s"
        super().__init__(f"{call}: gave up after {attempts} attempt{plural} ({reason}){detail}")

    @property
    def deadline(self) -> bool:
        """True when the deadline, not the attempt count, ended the retries."""
        return self.reason.startswith("deadline")


def _nothing(_: Any) -> None:
    return None


@dataclass(frozen=True)
class RetryHooks:
    """Callbacks for telemetry; each must be quick and must not raise."""

    on_retry: Callable[[RetryEvent], None] = _nothing
    """An attempt failed and another one follows after `event.wait` seconds."""
    on_give_up: Callable[[GaveUp], None] = _nothing
    """Retries ended without success (any reason but a non-retryable error)."""
    on_expired: Callable[[GaveUp], None] = _nothing
    """The deadline ended the retries (also reported to on_give_up)."""


NO_HOOKS = RetryHooks()

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Plan(Generic[E]):
    """Retry state for one call: which endpoint is next, and when each may be asked again."""

    name: str
    endpoints: Sequence[E]
    deadline: Deadline
    policy: AccessPolicy
    classify: Callable[[BaseException], Verdict]
    rng: Callable[[], float]
    tries: list[int] = field(default_factory=list)
    not_before: list[float] = field(default_factory=list)
    stop_reason: str | None = None
    last_endpoint: int = 0

    def __post_init__(self) -> None:
        self.tries = [0] * len(self.endpoints)
        self.not_before = [0.0] * len(self.endpoints)

    @property
    def max_attempts(self) -> int:
        return max(self.policy.attempts, len(self.endpoints))

    def endpoint_for(self, attempt: int) -> int:
        return (attempt - 1) % len(self.endpoints)

    def started(self, attempt: int) -> int:
        index = self.endpoint_for(attempt)
        self.tries[index] += 1
        self.last_endpoint = index
        return index

    def retry(self, exc: BaseException) -> bool:
        return self.classify(exc).retryable

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt; also decides whether there is one (`stop_reason`)."""
        error = state.outcome.exception() if state.outcome is not None else None
        now = self.deadline.clock()
        if error is not None:
            retry_after = self.classify(error).retry_after
            if retry_after is not None:
                if retry_after > self.policy.max_retry_after:
                    self.stop_reason = (
                        f"Retry-After {retry_after:g}s is longer than the "
                        f"{self.policy.max_retry_after:g}s allowed"
                    )
                    return 0.0
                self.not_before[self.last_endpoint] = now + retry_after
        if state.attempt_number >= self.max_attempts:
            self.stop_reason = "attempts used up"
            return 0.0
        following = self.endpoint_for(state.attempt_number + 1)
        wait = max(0.0, self.not_before[following] - now)
        if self.tries[following] > 0:
            wait = max(wait, self.backoff(self.tries[following]))
        left = self.deadline.remaining()
        if wait + self.deadline.margin >= left:
            asked = " (Retry-After)" if self.not_before[following] > now else ""
            self.stop_reason = (
                f"deadline: a {wait:.2f}s wait{asked} does not fit in {left:.2f}s left"
            )
            return 0.0
        return wait

    def backoff(self, tries: int) -> float:
        policy = self.policy
        ceiling = min(policy.backoff_cap, policy.backoff_base * 2.0 ** (tries - 1))
        return ceiling * (1.0 - policy.jitter) + ceiling * policy.jitter * self.rng()

    def stop(self, _: RetryCallState) -> bool:
        return self.stop_reason is not None


async def call_with_retries(
    fn: Callable[[E, Deadline], Awaitable[T]],
    endpoints: Sequence[E],
    *,
    deadline: Deadline,
    policy: AccessPolicy | None = None,
    name: str = "call",
    classify: Callable[[BaseException], Verdict] = classify,
    hooks: RetryHooks = NO_HOOKS,
    sleep: Sleep = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Call `fn(endpoint, attempt_deadline)` with retries; see the module docstring.

    Each attempt's deadline is `deadline.child(policy.call_timeout)`, and the attempt is
    cancelled when it passes, whether or not `fn` honours it.
    """
    if not endpoints:
        raise ValueError(f"{name}: no endpoint to call")
    policy = policy or AccessPolicy()
    plan: _Plan[E] = _Plan(name, endpoints, deadline, policy, classify, rng)

    def give_up(state: RetryCallState) -> Any:
        last = state.outcome.exception() if state.outcome is not None else None
        error = GaveUp(name, plan.stop_reason or "stopped", state.attempt_number, last)
        _report(hooks, error)
        raise error from last

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if error is None:
            return
        endpoint = endpoints[plan.endpoint_for(state.attempt_number)]
        wait = state.upcoming_sleep
        hooks.on_retry(RetryEvent(name, state.attempt_number, str(endpoint), error, wait))

    if deadline.expired:
        error = GaveUp(name, "deadline: expired before the first attempt", 0, None)
        _report(hooks, error)
        raise error

    retrying = AsyncRetrying(
        sleep=sleep,
        stop=plan.stop,
        wait=plan.wait,
        retry=retry_if_exception(plan.retry),
        before_sleep=before_sleep,
        retry_error_callback=give_up,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            index = plan.started(attempt.retry_state.attempt_number)
            attempt_deadline = deadline.child(policy.call_timeout)
            if attempt_deadline.expired:
                raise TimeoutError(f"{name}: no time left for an attempt")
            async with asyncio.timeout(attempt_deadline.remaining()):
                return await fn(endpoints[index], attempt_deadline)
    raise AssertionError("unreachable: tenacity either returns, raises or calls give_up")


def _report(hooks: RetryHooks, error: GaveUp) -> None:
    hooks.on_give_up(error)
    if error.deadline:
        hooks.on_expired(error)

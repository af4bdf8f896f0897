"""Deadlines carve ever-smaller budgets; retries stay inside them and fail over between endpoints."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.fakes import FakeTime
from herdsman.cluster.budget import AccessPolicy, Deadline, DeadlineExceeded
from herdsman.cluster.retry import (
    GaveUp,
    HttpStatusError,
    RetryEvent,
    RetryHooks,
    call_with_retries,
    classify,
    parse_retry_after,
)

pytestmark = pytest.mark.unit

seconds = st.floats(min_value=0.0, max_value=120.0, allow_nan=False)


# --- deadlines --------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    budget=seconds,
    margin=st.floats(min_value=0.0, max_value=1.0),
    steps=st.lists(
        st.tuples(st.one_of(st.none(), seconds), st.floats(min_value=0.0, max_value=5.0)),
        min_size=1,
        max_size=12,
    ),
)
def test_a_child_never_outlives_its_parent_at_any_depth(
    budget: float, margin: float, steps: list[tuple[float | None, float]]
) -> None:
    clock = FakeTime()
    chain = [Deadline(budget, clock=clock, margin=margin)]
    for cap, elapsed in steps:
        parent = chain[-1]
        child = parent.child(cap)
        assert child.remaining() <= parent.remaining()
        if parent.remaining() > margin:
            assert child.when <= parent.when - margin + 1e-9
        if cap is not None:
            assert child.remaining() <= cap + 1e-9
        chain.append(child)
        clock.advance(elapsed)
        # At every later moment each deadline still ends no later than every ancestor.
        for outer, inner in itertools.pairwise(chain):
            assert inner.remaining() <= outer.remaining()
            assert not (outer.expired and not inner.expired)


def test_an_expired_deadline_reports_zero_and_raises_on_check() -> None:
    clock = FakeTime()
    deadline = Deadline(1.0, clock=clock)
    assert not deadline.expired
    clock.advance(1.5)
    assert deadline.expired
    assert deadline.remaining() == 0.0
    with pytest.raises(DeadlineExceeded, match="query: deadline exceeded"):
        deadline.check("query")
    assert deadline.child(10.0).expired


def test_a_child_of_a_parent_within_its_margin_is_born_expired() -> None:
    clock = FakeTime()
    parent = Deadline(0.04, clock=clock, margin=0.05)
    assert not parent.expired
    assert parent.child().expired


def test_policy_reads_overrides_from_the_environment_and_refuses_nonsense() -> None:
    policy = AccessPolicy.from_env(
        {"HERDSMAN_ACCESS_CALL_TIMEOUT": "3", "HERDSMAN_ACCESS_ATTEMPTS": "5", "OTHER": "x"}
    )
    assert policy.call_timeout == 3.0
    assert policy.attempts == 5
    assert policy.reconcile_budget == AccessPolicy().reconcile_budget
    with pytest.raises(ValueError, match="not a number"):
        AccessPolicy.from_env({"HERDSMAN_ACCESS_JITTER": "lots"})
    with pytest.raises(ValueError, match="attempts"):
        AccessPolicy(attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        AccessPolicy(jitter=1.5)


# --- classification and Retry-After -----------------------------------------------------------


class ApiLikeError(Exception):
    """Shaped like kubernetes.client.ApiException: a status and headers."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.headers = headers or {}


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (HttpStatusError(429), True),
        (HttpStatusError(503), True),
        (HttpStatusError(500), True),
        (HttpStatusError(501), False),
        (HttpStatusError(400), False),
        (HttpStatusError(404), False),
        (ApiLikeError(409), False),
        (ApiLikeError(502), True),
        (ValueError("bad query"), False),
        (asyncio.CancelledError(), False),
    ],
)
def test_only_transport_failures_and_overload_are_retryable(
    error: BaseException, retryable: bool
) -> None:
    assert classify(error).retryable is retryable


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert (
        parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now)
        == 30.0
    )
    assert (
        parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    )
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert classify(ApiLikeError(429, {"retry-after": "3"})).retry_after == 3.0


# --- retries ------------------------------------------------------------------------------------


class Script:
    """A call whose attempts fail or succeed as scripted, recording the endpoints asked."""

    def __init__(
        self, clock: FakeTime, outcomes: list[BaseException | str], took: float = 0.0
    ) -> None:
        self.clock = clock
        self.outcomes = list(outcomes)
        self.took = took
        self.asked: list[str] = []
        self.deadlines: list[float] = []

    async def __call__(self, endpoint: str, deadline: Deadline) -> str:
        self.asked.append(endpoint)
        self.deadlines.append(deadline.remaining())
        # A slow attempt is cut at its own deadline, as a real client timeout would.
        self.clock.advance(min(self.took, deadline.remaining()))
        outcome = self.outcomes.pop(0) if self.outcomes else ConnectionRefusedError("refused")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def test_a_dead_first_address_fails_over_to_the_next_without_waiting() -> None:
    clock = FakeTime()
    script = Script(clock, [ConnectionRefusedError("a is down"), ConnectionRefusedError("b"), "ok"])
    result = asyncio.run(
        call_with_retries(
            script, ["a", "b", "c"], deadline=Deadline(10, clock=clock), sleep=clock.sleep
        )
    )
    assert result == "ok"
    assert script.asked == ["a", "b", "c"]
    assert clock.sleeps == [0.0, 0.0]


def test_attempts_rotate_through_the_endpoints_and_back_off_on_a_second_try() -> None:
    clock = FakeTime()
    script = Script(clock, [])
    policy = AccessPolicy(attempts=5, backoff_base=0.5, backoff_cap=4.0, jitter=0.0)
    events: list[RetryEvent] = []
    gave_up: list[GaveUp] = []
    with pytest.raises(GaveUp, match="attempts used up") as raised:
        asyncio.run(
            call_with_retries(
                script,
                ["a", "b", "c"],
                deadline=Deadline(60, clock=clock),
                policy=policy,
                sleep=clock.sleep,
                hooks=RetryHooks(on_retry=events.append, on_give_up=gave_up.append),
            )
        )
    assert script.asked == ["a", "b", "c", "a", "b"]
    assert clock.sleeps == [0.0, 0.0, 0.5, 0.5]
    assert [e.attempt for e in events] == [1, 2, 3, 4]
    assert gave_up == [raised.value]
    assert raised.value.attempts == 5
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)


def test_backoff_doubles_per_endpoint_is_capped_and_jittered() -> None:
    clock = FakeTime()
    script = Script(clock, [])
    policy = AccessPolicy(attempts=5, backoff_base=1.0, backoff_cap=3.0, jitter=0.5)
    with pytest.raises(GaveUp):
        asyncio.run(
            call_with_retries(
                script,
                ["only"],
                deadline=Deadline(60, clock=clock),
                policy=policy,
                sleep=clock.sleep,
                rng=lambda: 1.0,
            )
        )
    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0]
    clock2 = FakeTime()
    with pytest.raises(GaveUp):
        asyncio.run(
            call_with_retries(
                Script(clock2, []),
                ["only"],
                deadline=Deadline(60, clock=clock2),
                policy=policy,
                sleep=clock2.sleep,
                rng=lambda: 0.0,
            )
        )
    assert clock2.sleeps == [0.5, 1.0, 1.5, 1.5]


def test_no_retry_on_a_client_error() -> None:
    clock = FakeTime()
    script = Script(clock, [HttpStatusError(404, "no such thing"), "never"])
    with pytest.raises(HttpStatusError) as raised:
        asyncio.run(
            call_with_retries(
                script, ["a", "b"], deadline=Deadline(10, clock=clock), sleep=clock.sleep
            )
        )
    assert raised.value.status == 404
    assert script.asked == ["a"]


def test_a_kubernetes_style_conflict_is_raised_as_it_is() -> None:
    clock = FakeTime()
    script = Script(clock, [ApiLikeError(409)])
    with pytest.raises(ApiLikeError):
        asyncio.run(
            call_with_retries(
                script, ["api"], deadline=Deadline(10, clock=clock), sleep=clock.sleep
            )
        )
    assert len(script.asked) == 1


def test_retry_after_is_honoured_when_it_fits() -> None:
    clock = FakeTime()
    script = Script(clock, [HttpStatusError(429, retry_after="2"), "ok"])
    policy = AccessPolicy(backoff_base=0.1, jitter=0.0)
    result = asyncio.run(
        call_with_retries(
            script, ["a"], deadline=Deadline(10, clock=clock), policy=policy, sleep=clock.sleep
        )
    )
    assert result == "ok"
    assert clock.sleeps == [2.0]


def test_retry_after_that_does_not_fit_in_the_deadline_ends_the_retries_at_once() -> None:
    clock = FakeTime()
    script = Script(clock, [HttpStatusError(503, retry_after="8"), "ok"])
    expired: list[GaveUp] = []
    with pytest.raises(GaveUp, match="does not fit") as raised:
        asyncio.run(
            call_with_retries(
                script,
                ["a"],
                deadline=Deadline(5, clock=clock),
                sleep=clock.sleep,
                hooks=RetryHooks(on_expired=expired.append),
            )
        )
    assert raised.value.deadline
    assert expired == [raised.value]
    assert script.asked == ["a"]
    assert clock.sleeps == []


def test_retry_after_beyond_the_policy_limit_is_refused_even_with_time_left() -> None:
    clock = FakeTime()
    script = Script(clock, [HttpStatusError(429, retry_after="50"), "ok"])
    with pytest.raises(GaveUp, match="longer than"):
        asyncio.run(
            call_with_retries(
                script,
                ["a"],
                deadline=Deadline(300, clock=clock),
                policy=AccessPolicy(max_retry_after=10),
                sleep=clock.sleep,
            )
        )
    assert len(script.asked) == 1


def test_a_server_that_asked_for_time_is_skipped_for_the_other_endpoint() -> None:
    clock = FakeTime()
    script = Script(clock, [HttpStatusError(429, retry_after="5"), ConnectionRefusedError(), "ok"])
    result = asyncio.run(
        call_with_retries(
            script,
            ["a", "b"],
            deadline=Deadline(30, clock=clock),
            policy=AccessPolicy(jitter=0.0, backoff_base=0.1),
            sleep=clock.sleep,
        )
    )
    assert result == "ok"
    assert script.asked == ["a", "b", "a"]
    # b was tried at once; the return to a waited for a's Retry-After, not just a backoff.
    assert clock.sleeps == [0.0, 5.0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    budget=st.floats(min_value=0.0, max_value=30.0),
    took=st.floats(min_value=0.0, max_value=10.0),
    attempts=st.integers(min_value=1, max_value=20),
    endpoints=st.integers(min_value=1, max_value=3),
    call_timeout=st.floats(min_value=0.1, max_value=10.0),
)
def test_retries_never_run_past_the_deadline(
    budget: float, took: float, attempts: int, endpoints: int, call_timeout: float
) -> None:
    clock = FakeTime()
    deadline = Deadline(budget, clock=clock)
    script = Script(clock, [], took=took)
    policy = AccessPolicy(attempts=attempts, call_timeout=call_timeout, backoff_base=0.3)
    with pytest.raises(GaveUp):
        asyncio.run(
            call_with_retries(
                script,
                [f"e{i}" for i in range(endpoints)],
                deadline=deadline,
                policy=policy,
                sleep=clock.sleep,
            )
        )
    assert clock.now <= deadline.when + 1e-9
    assert len(script.asked) <= max(attempts, endpoints)
    assert all(d <= call_timeout + 1e-9 for d in script.deadlines)


def test_an_attempt_that_hangs_is_cut_at_its_own_deadline_and_retried() -> None:
    calls: list[str] = []

    async def hang_then_answer(endpoint: str, deadline: Deadline) -> str:
        calls.append(endpoint)
        if endpoint == "slow":
            await asyncio.sleep(30)
        return endpoint

    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await call_with_retries(
            hang_then_answer,
            ["slow", "fast"],
            deadline=Deadline(5.0),
            policy=AccessPolicy(call_timeout=0.2),
        )
        return result, loop.time() - started

    result, took = asyncio.run(main())
    assert result == "fast"
    assert calls == ["slow", "fast"]
    assert took < 2.0


def test_an_expired_deadline_makes_no_call() -> None:
    clock = FakeTime()
    deadline = Deadline(1, clock=clock)
    clock.advance(2)
    script = Script(clock, ["ok"])
    with pytest.raises(GaveUp, match="before the first attempt"):
        asyncio.run(call_with_retries(script, ["a"], deadline=deadline, sleep=clock.sleep))
    assert script.asked == []


def test_cancellation_is_never_swallowed_as_a_failure() -> None:
    clock = FakeTime()
    script = Script(clock, [asyncio.CancelledError(), "ok"])
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(
            call_with_retries(script, ["a"], deadline=Deadline(10, clock=clock), sleep=clock.sleep)
        )
    assert script.asked == ["a"]

"""Taking the measurements `runs.due()` asked for: the only part of analysis that does I/O.

`measure()` measures every due metric concurrently. Each metric gets its own deadline carved
from the one passed in (at most `AccessPolicy.measurement_timeout`), each provider attempt a
smaller one again, and a hard cancel at the metric's deadline backs that up, so a slow or
hanging source turns into an `Error` measurement in time for the reconcile to record it. No
exception escapes except cancellation: a failure of any kind is that metric's Error.

Placeholders in the provider spec are filled per metric: `{{args.NAME}}`, `{{rollout.*}}` and,
for judged metrics, `{{group}}` (herdsman.analysis.providers.templating). Secret arguments are
read through `secrets` only when a metric uses them, at most once per call, and their values
are masked out of every message and value that could reach the run's status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from herdsman.analysis.conditions import assess
from herdsman.analysis.providers import PROVIDERS
from herdsman.analysis.providers.base import (
    JobClient,
    MeasurementInProgress,
    Provider,
    ProviderContext,
    Samples,
    SecretResolver,
    Window,
)
from herdsman.analysis.providers.templating import (
    context_variables,
    placeholders_in,
    render_tree,
)
from herdsman.analysis.runs import Due, MeasurementResult, run_start
from herdsman.api.analysis import Argument, Metric
from herdsman.api.analysis_run import AnalysisRun
from herdsman.api.base import ApiModel, duration_seconds
from herdsman.api.judge import ScoringSpec
from herdsman.cluster.budget import AccessPolicy, Deadline
from herdsman.cluster.retry import NO_HOOKS, RetryHooks

MASK = "***"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Arguments:
    """The run's arguments; Secret values fetched on first use and shared between metrics."""

    def __init__(
        self, run: AnalysisRun, secrets: SecretResolver, policy: AccessPolicy, deadline: Deadline
    ) -> None:
        self._args: dict[str, Argument] = {arg.name: arg for arg in run.spec.args}
        self._namespace = run.spec.context.namespace
        self._secrets = secrets
        self._policy = policy
        self._deadline = deadline
        self._pending: dict[str, asyncio.Task[str]] = {}
        self.secret_values: set[str] = set()

    async def values(self, names: set[str]) -> dict[str, str]:
        """`args.NAME` -> value for the wanted names that exist (unknown ones stay unknown)."""
        found: dict[str, str] = {}
        for name in sorted(names):
            arg = self._args.get(name)
            if arg is None:
                continue
            if arg.value_from is None:
                found[f"args.{name}"] = arg.value or ""
                continue
            task = self._pending.get(name)
            if task is None:
                task = asyncio.ensure_future(self._read(arg))
                self._pending[name] = task
            found[f"args.{name}"] = await asyncio.shield(task)
        return found

    async def _read(self, arg: Argument) -> str:
        assert arg.value_from is not None
        value = await self._secrets.get(
            self._namespace,
            arg.value_from.secret_key_ref,
            deadline=self._deadline.child(self._policy.call_timeout),
        )
        self.secret_values.add(value)
        return value

    def cancel(self) -> None:
        for task in self._pending.values():
            task.cancel()


def _mask(text: str, secrets: set[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, MASK)
    return text


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, TimeoutError) and not text:
        return "deadline exceeded"
    return text or type(exc).__name__


async def _render(
    spec: ApiModel, run: AnalysisRun, arguments: _Arguments, group: str | None
) -> ApiModel:
    tree = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    wanted = placeholders_in(tree)
    variables = context_variables(run.spec.context)
    variables.update(
        await arguments.values({name[5:] for name in wanted if name.startswith("args.")})
    )
    if group is not None:
        variables["group"] = group
    return type(spec).model_validate(render_tree(tree, variables))


def _window(run: AnalysisRun, now: datetime) -> Window:
    scoring = run.spec.scoring or ScoringSpec()
    lookback = duration_seconds(scoring.lookback) if scoring.lookback else None
    start = now - timedelta(seconds=lookback) if lookback else run_start(run, now)
    step = duration_seconds(scoring.step) or 15.0
    return Window(start=min(start, now), end=now, step_seconds=step)


async def _measure_metric(
    run: AnalysisRun,
    metric: Metric,
    groups: Sequence[str],
    provider: Provider[Any],
    spec: ApiModel,
    context: ProviderContext,
    arguments: _Arguments,
    deadline: Deadline,
    clock: Callable[[], datetime],
) -> MeasurementResult:
    started = clock()
    if metric.judge is None:
        rendered = await _render(spec, run, arguments, None)
        observation = await provider.observe(rendered, context, deadline)
        outcome = provider.outcome(rendered, observation) or assess(
            observation,
            metric.success_condition,
            metric.failure_condition,
            language=metric.condition_language,
        )
        return MeasurementResult(
            metric=metric.name,
            phase=outcome.phase,
            started_at=started,
            finished_at=clock(),
            value=observation.text,
            message=outcome.message,
        )
    window = _window(run, started)
    names = {
        "baseline": run.spec.context.baseline_group,
        "canary": run.spec.context.canary_group,
    }

    async def sample(role: str) -> Samples:
        group = names.get(role)
        if not group:
            raise LookupError(f"the run's context names no {role} server group to sample")
        rendered = await _render(spec, run, arguments, group)
        return await provider.samples(rendered, context, deadline, window)

    roles = list(groups) or ["baseline", "canary"]
    taken = await asyncio.gather(*(sample(role) for role in roles))
    return MeasurementResult(
        metric=metric.name,
        phase=None,
        started_at=started,
        finished_at=clock(),
        samples={role: s.values for role, s in zip(roles, taken, strict=True)},
        timestamps={role: s.timestamps for role, s in zip(roles, taken, strict=True)},
    )


async def measure(
    run: AnalysisRun,
    due: Sequence[Due],
    *,
    deadline: Deadline,
    secrets: SecretResolver,
    policy: AccessPolicy | None = None,
    hooks: RetryHooks = NO_HOOKS,
    clock: Callable[[], datetime] = _utcnow,
    providers: Mapping[str, Provider[Any]] = PROVIDERS,
    jobs: JobClient | None = None,
) -> list[MeasurementResult]:
    """Take the due measurements concurrently; one result per due entry, in the same order.

    Never raises for a failed measurement: the result is an Error with the reason. `clock`
    (wall time, UTC) stamps the measurements and anchors judged metrics' windows.
    """
    policy = policy or AccessPolicy()
    metrics = {metric.name: metric for metric in run.spec.metrics}
    arguments = _Arguments(run, secrets, policy, deadline)

    async def one(item: Due) -> MeasurementResult:
        started = clock()
        metric = metrics.get(item.metric)
        metric_deadline = deadline.child(policy.measurement_timeout)
        try:
            if metric is None:
                raise LookupError(f"the run has no metric {item.metric!r}")
            kind = metric.provider.kind
            provider = providers.get(kind)
            if provider is None:
                raise LookupError(f"no provider {kind!r} is available")
            spec = getattr(metric.provider, kind)
            context = ProviderContext(
                namespace=run.spec.context.namespace,
                secrets=secrets,
                policy=policy,
                metric=metric.name,
                hooks=hooks,
                interval=duration_seconds(metric.interval) if metric.interval else None,
                run_started=run_start(run, started),
                jobs=jobs,
                run_name=run.metadata.name or "",
                run_uid=run.metadata.uid or "",
                measurement=_measurement_number(run, metric.name),
                in_progress=_in_progress(run, metric.name),
            )
            if metric_deadline.expired:
                raise TimeoutError("no time left in this reconcile to measure")
            async with asyncio.timeout(metric_deadline.remaining()):
                return await _measure_metric(
                    run,
                    metric,
                    item.groups,
                    provider,
                    spec,
                    context,
                    arguments,
                    metric_deadline,
                    clock,
                )
        except MeasurementInProgress as running:
            return MeasurementResult(
                metric=item.metric,
                phase=None,
                started_at=started,
                finished_at=clock(),
                message=str(running),
                in_progress=running.handle,
            )
        except Exception as exc:
            message = _describe(exc)
            if isinstance(exc, TimeoutError) and "deadline" not in message:
                message = f"deadline exceeded: {message}"
            return MeasurementResult(
                metric=item.metric,
                phase="Error",
                started_at=started,
                finished_at=clock(),
                message=message,
            )

    try:
        results = await asyncio.gather(*(one(item) for item in due))
    finally:
        arguments.cancel()
    return [_masked(result, arguments.secret_values) for result in results]


def _measurement_number(run: AnalysisRun, metric: str) -> int:
    """1 for a metric's first measurement; errors count, a measurement in progress keeps its."""
    result = run.status.result(metric)
    return 1 if result is None else result.count + result.error + 1


def _in_progress(run: AnalysisRun, metric: str) -> str | None:
    result = run.status.result(metric)
    return result.in_progress.name if result is not None and result.in_progress else None


def _masked(result: MeasurementResult, secrets: set[str]) -> MeasurementResult:
    if not secrets:
        return result
    return MeasurementResult(
        metric=result.metric,
        phase=result.phase,
        started_at=result.started_at,
        finished_at=result.finished_at,
        value=_mask(result.value, secrets),
        message=_mask(result.message, secrets),
        samples=result.samples,
        timestamps=result.timestamps,
        in_progress=result.in_progress,
    )

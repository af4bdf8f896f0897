"""A tiny, honest model of the cluster for engine tests: ReplicaSets, Services, AnalysisRuns.

Decisions are applied the way the doing layer applies them; pods become available when the test
says so (`settle`), so the tests can stop the world at every intermediate state.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from herdsman.api.rollout import Rollout
from herdsman.engine.decide import decide
from herdsman.engine.world import (
    AnalysisRunView,
    Decision,
    Desired,
    RouterState,
    ServerGroup,
    ServiceState,
    World,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def manifest(
    *,
    replicas: int = 10,
    steps: list[dict[str, Any]] | None = None,
    image: str = "app:v1",
    **canary: Any,
) -> dict[str, Any]:
    strategy: dict[str, Any] = {
        "steps": steps if steps is not None else [{"setWeight": 20}, {"pause": {}}]
    }
    strategy.update(canary)
    return {
        "apiVersion": "herdsman.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "checkout", "namespace": "shop", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "strategy": {"canary": strategy},
        },
    }


@dataclass
class Sim:
    body: dict[str, Any]
    now: datetime = T0
    groups: dict[str, ServerGroup] = field(default_factory=dict)
    services: dict[str, ServiceState] = field(default_factory=dict)
    runs: dict[str, AnalysisRunView] = field(default_factory=dict)
    history: list[Decision] = field(default_factory=list)
    # Template names the observer reports as not found (an InvalidSpec cause).
    missing_templates: set[str] = field(default_factory=set)
    # Referenced analyses that cannot be built (e.g. an argument the template does not declare).
    analysis_problems: list[str] = field(default_factory=list)
    # When True, a scaled ReplicaSet is "unsettled" (its controller has not observed the new
    # spec.replicas yet) until the next `settle`, as a real ReplicaSet is for a moment.
    lag: bool = False
    # A traffic router (opt in): it holds what the last applied decision told it, and the
    # engine reads it back, as it reads a real router's object. None: no router observed.
    router: RouterState | None = None

    @classmethod
    def of(cls, body: dict[str, Any], **kwargs: Any) -> Sim:
        """A sim whose cluster already holds every Service the spec names."""
        sim = cls(body, **kwargs)
        canary = body["spec"]["strategy"].get("canary", {})
        for key in ("stableService", "canaryService", "baselineService"):
            if canary.get(key):
                sim.services[canary[key]] = ServiceState(canary[key], True)
        return sim

    @property
    def rollout(self) -> Rollout:
        return Rollout.model_validate(self.body)

    @property
    def status(self) -> Any:
        return self.rollout.status

    def world(self) -> World:
        return World(
            groups=tuple(self.groups.values()),
            services=dict(self.services),
            analysis_runs=tuple(self.runs.values()),
            missing_templates=frozenset(self.missing_templates),
            analysis_problems=tuple(self.analysis_problems),
            router=self.router,
        )

    def reconcile(
        self, *, drop: Callable[[tuple[str, str]], bool] | None = None, status: bool = True
    ) -> Decision:
        """One pass; `drop`/`status` model an operator killed part-way (see `apply`)."""
        decision = decide(self.rollout, self.world(), self.now)
        self.apply(decision, drop=drop, status=status)
        self.history.append(decision)
        return decision

    def apply(
        self,
        d: Decision,
        *,
        drop: Callable[[tuple[str, str]], bool] | None = None,
        status: bool = True,
    ) -> None:
        """Apply a decision. `drop((kind, name))` True skips that one write (kind is create,
        scale, delete, selector, run or terminate; ("traffic", "router") with a router);
        `status=False` skips the status write. Both model a pass cut short: the operator
        killed, or a write that failed."""
        if drop is not None or not status:
            d = _partial(d, drop or (lambda _: False))
        for new in d.desired.create_groups:
            self.groups[new.name] = ServerGroup(
                name=new.name,
                revision=new.revision,
                pod_hash=new.pod_hash,
                kind=new.kind,
                replicas=new.replicas,
            )
        for name, size in d.desired.scale.items():
            g = self.groups[name]
            # Scaling down removes unavailable pods first, as a ReplicaSet does.
            available = min(g.available, size)
            self.groups[name] = replace(
                g,
                replicas=size,
                available=available,
                ready=available,
                settled=g.settled and not (self.lag and size != g.replicas),
            )
        for name in d.desired.delete_groups:
            self.groups.pop(name, None)
        traffic = d.desired.traffic
        if (
            traffic is not None
            and self.router is not None
            and self.router.available
            and not (drop is not None and drop(("traffic", "router")))
        ):
            self.router = replace(
                self.router,
                canary_weight=traffic.canary_weight,
                baseline_weight=traffic.baseline_weight,
                routes=traffic.route_names,
                http_fault=traffic.http_fault is not None,
            )
        for svc, group in d.desired.selectors.items():
            state = self.services.get(svc, ServiceState(svc, True))
            self.services[svc] = ServiceState(
                svc, True, {**state.selector, "herdsman.dev/server-group": group}
            )
        for new_run in d.desired.create_runs:
            self.runs[new_run.name] = AnalysisRunView(
                name=new_run.name,
                kind=new_run.kind,
                revision=new_run.revision,
                step_index=new_run.step_index,
                attempt=new_run.attempt,
                phase="Running",
            )
        for name in d.desired.terminate_runs:
            if name in self.runs:
                self.runs[name] = replace(self.runs[name], terminated=True, phase="Successful")
        if status:
            self.body["status"] = d.status.to_wire()
        self.body["metadata"]["generation"] = self.body["metadata"].get("generation", 1)

    def settle(self, rng: random.Random | None = None) -> None:
        """Pods come up: all of them, or a random share of the missing ones with `rng`."""
        for name, g in list(self.groups.items()):
            if not g.settled:
                self.groups[name] = g = replace(g, settled=True)
            missing = g.replicas - g.available
            if missing <= 0:
                continue
            up = missing if rng is None else rng.randint(0, missing)
            self.groups[name] = replace(g, available=g.available + up, ready=g.available + up)

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)

    def set_image(self, image: str) -> None:
        body = copy.deepcopy(self.body)
        body["spec"]["template"]["spec"]["containers"][0]["image"] = image
        body["metadata"]["generation"] += 1
        self.body = body

    def patch_status(self, **fields: Any) -> None:
        self.body.setdefault("status", {}).update(fields)

    @property
    def image(self) -> str:
        return str(self.body["spec"]["template"]["spec"]["containers"][0]["image"])

    def set_replicas(self, replicas: int) -> None:
        """What an HPA does: write spec.replicas through the scale subresource."""
        body = copy.deepcopy(self.body)
        body["spec"]["replicas"] = replicas
        body["metadata"]["generation"] += 1
        self.body = body

    def set_paused(self, paused: bool) -> None:
        """`kubectl herdsman pause` / `resume`: spec.paused."""
        body = copy.deepcopy(self.body)
        body["spec"]["paused"] = paused
        body["metadata"]["generation"] += 1
        self.body = body

    def promote(self, from_step: int | None = None, *, full: bool = False) -> None:
        """`kubectl herdsman promote`: names the step the user saw, or skips everything."""
        request: dict[str, Any] = {"full": full}
        if from_step is not None:
            request["fromStep"] = from_step
        self.patch_status(promote=request)

    def abort(self) -> None:
        self.patch_status(abort=True)

    def retry(self) -> None:
        self.patch_status(abort=False)

    def set_runs(
        self,
        phase: str,
        *,
        kind: str | None = None,
        message: str = "",
        rng: random.Random | None = None,
    ) -> None:
        """Move live analysis runs (of `kind`, or all) to `phase`; with `rng`, each one maybe."""
        for name, run in list(self.runs.items()):
            if run.done or run.terminated or (kind is not None and run.kind != kind):
                continue
            if rng is None or rng.random() < 0.5:
                self.runs[name] = replace(run, phase=phase, message=message)

    def run_until(
        self, predicate: Any, *, limit: int = 200, rng: random.Random | None = None
    ) -> Decision:
        """Reconcile, settle, tick until predicate(sim) holds; fail loudly if it never does."""
        for _ in range(limit):
            d = self.reconcile()
            if predicate(self):
                return d
            self.settle(rng)
            self.tick()
        raise AssertionError(f"never reached; status: {self.body.get('status')}")

    def canary_size(self) -> int:
        name = self.status.canary_server_group
        return self.groups[name].replicas if name in self.groups else 0


def _partial(d: Decision, drop: Callable[[tuple[str, str]], bool]) -> Decision:
    """A copy of `d` without the writes `drop` names (status is handled by the caller)."""
    w = d.desired
    desired = Desired(
        create_groups=[g for g in w.create_groups if not drop(("create", g.name))],
        scale={n: s for n, s in w.scale.items() if not drop(("scale", n))},
        delete_groups=[n for n in w.delete_groups if not drop(("delete", n))],
        selectors={s: g for s, g in w.selectors.items() if not drop(("selector", s))},
        traffic=w.traffic,
        traffic_first=w.traffic_first,
        create_runs=[r for r in w.create_runs if not drop(("run", r.name))],
        terminate_runs=[n for n in w.terminate_runs if not drop(("terminate", n))],
        delete_pods=list(w.delete_pods),
    )
    return replace(d, desired=desired)


# --- hypothesis strategies: specs the API server admits ------------------------------------------
#
# Every rule in the CRD's CEL validations is respected here (baseline caps setWeight at 50,
# setCanaryScale needs a router, a router needs both services and, with a baseline, a
# baselineService, maxSurge and maxUnavailable are not both literally zero), because the
# engine is entitled to rely on them.

TEMPLATE = "health"


def int_or_percent() -> st.SearchStrategy[int | str]:
    return st.one_of(st.integers(0, 5), st.integers(0, 100).map(lambda p: f"{p}%"))


def _pause(indefinite: bool) -> st.SearchStrategy[dict[str, Any]]:
    timed = st.one_of(
        st.integers(0, 60), st.integers(0, 60).map(lambda s: f"{s}s"), st.just("1m")
    ).map(lambda d: {"pause": {"duration": d}})
    return st.one_of(timed, st.just({"pause": {}})) if indefinite else timed


@st.composite
def rollouts(
    draw: st.DrawFn,
    *,
    routed: bool | None = None,
    indefinite: bool = True,
    analysis: bool = True,
    max_replicas: int = 50,
    max_steps: int = 6,
    scale_with_dynamic: bool = True,
    background_chaos: bool = False,
) -> dict[str, Any]:
    """A Rollout manifest (the dict a user applies) for the canary strategy; with
    `background_chaos`, its background analysis may carry a killPods fault (analysis.chaos)."""
    replicas = draw(st.integers(0, max_replicas))
    baseline = draw(st.booleans())
    is_routed = draw(st.booleans()) if routed is None else routed
    dynamic = is_routed and draw(st.booleans())
    # maxTrafficWeight: weights out of another total (a fine one, and a coarse odd one).
    top = draw(st.sampled_from([100, 1000, 7])) if is_routed else 100
    kinds = [
        st.integers(0, top // 2 if baseline else top).map(lambda w: {"setWeight": w}),
        _pause(indefinite),
    ]
    if analysis:
        kinds.append(st.just({"analysis": {"templates": [{"templateName": TEMPLATE}]}}))
    if is_routed and not (dynamic and not scale_with_dynamic):
        scale = st.one_of(
            st.integers(0, max_replicas + 2).map(lambda r: {"replicas": r}),
            st.integers(0, 100).map(lambda w: {"weight": w}),
            st.just({"matchTrafficWeight": True}),
        ).map(lambda s: {"setCanaryScale": s})
        kinds.append(scale)
        # Argo lets setCanaryScale go with any step kind: combined with another drawn step.
        kinds.append(st.tuples(st.one_of(kinds[:-1]), scale).map(lambda p: {**p[0], **p[1]}))
    steps = draw(st.lists(st.one_of(kinds), max_size=max_steps))
    surge = draw(int_or_percent())
    # The CRD refuses both zero, in either form (0 or "0%"); limits() copes regardless.
    zero = surge in (0, "0%")
    pct = st.integers(1 if zero else 0, 100).map(lambda p: f"{p}%")
    unavailable = draw(st.one_of(st.integers(1 if zero else 0, 5), pct))
    canary: dict[str, Any] = {
        "baseline": baseline,
        "maxSurge": surge,
        "maxUnavailable": unavailable,
        "scaleDownDelaySeconds": draw(st.integers(0, 60)),
        "abortScaleDownDelaySeconds": draw(st.integers(0, 60)),
    }
    if is_routed or draw(st.booleans()):
        canary["stableService"] = "checkout"
        canary["canaryService"] = "checkout-canary"
        if baseline and (is_routed or draw(st.booleans())):
            canary["baselineService"] = "checkout-baseline"
    if is_routed:
        canary["trafficRouting"] = {"gatewayAPI": {"httpRoute": "checkout"}}
        if top != 100:
            # The engine is router-blind: the CRD allows a total with nginx only, which
            # cannot split a baseline off; the walks exercise the arithmetic regardless.
            canary["trafficRouting"]["maxTrafficWeight"] = top
        canary["dynamicStableScale"] = dynamic
    if draw(st.integers(0, 3)) == 0:
        # replicaProgressThreshold: a step's scale-up counts as done with part of its pods.
        canary["replicaProgressThreshold"] = draw(
            st.one_of(
                st.integers(1, 100).map(lambda v: {"type": "Percent", "value": v}),
                st.integers(1, 5).map(lambda v: {"type": "Pod", "value": v}),
            )
        )
    if analysis and draw(st.booleans()):
        canary["analysis"] = {
            "templates": [{"templateName": TEMPLATE}],
            "startingStep": draw(st.integers(0, len(steps))),
        }
        start = canary["analysis"]["startingStep"]
        if background_chaos and start < len(steps) and draw(st.integers(0, 3)) > 0:
            canary["analysis"]["chaos"] = {
                "action": "killPods",
                "percent": draw(st.integers(1, 100)),
                "duration": draw(st.sampled_from([1, 5, "10s", "30s", "1m"])),
                "startingStep": draw(st.integers(start, len(steps) - 1)),
            }
    body = manifest(replicas=replicas, steps=steps, **canary)
    body["spec"]["revisionHistoryLimit"] = draw(st.integers(0, 3))
    return body

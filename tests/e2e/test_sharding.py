"""Three replicas, each acting on its own shards of the Rollouts; one is killed, one joins.

The chart is installed with `sharding.shards=6` (and short Lease times, so the test is quick) and
its pods' command is run as processes, as in test_ha.py: the chart's arguments, its
ServiceAccount token (which must therefore grant the Leases), POD_ID as the pod's name.

What is checked, from the cluster and from the operators' own logs:
- the replicas split the shards evenly, and each Rollout carries its shard as a label;
- a killed replica's shards move to the others within the lease time (plus a renew interval
  and a margin) and its Rollouts, killed mid-canary, finish on them;
- a replica that joins gets its share as the others release theirs, mid-rollout;
- each replica sees only its own shards' Rollouts (its `herdsman_rollouts_cached` gauge counts
  those of the shards it holds, never all of them), after a kill and after a join too; and
  only their server groups (`herdsman_server_groups_cached`), each labelled with its shard;
- no Rollout was acted on by two replicas at once: every transition a replica logged falls in
  one of its ownership intervals of the Rollout's shard (from its "shard N acquired by" to its
  "released"/"lost" line, or to its death), and no two replicas' intervals of a shard overlap.
"""

from __future__ import annotations

import functools
import itertools
import re
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.cluster import Cluster, wait_until
from harness.operator import ChartReplicas, OperatorProcess
from harness.rollouts import IMAGE_V2, IMAGE_V3, Rollouts, rollout
from herdsman.sharding import (
    LABEL_LEASE_ROLE,
    LABEL_OWNER_SHARD,
    LABEL_SHARD,
    owner_shard,
    shard_of,
)

pytestmark = pytest.mark.e2e

SHARDS = 6
LEASE = 4.0
RENEW = 1.0
PER_SHARD = 2
STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "8s"}},
    {"setWeight": 75},
    {"pause": {"duration": "1s"}},
]


@pytest.fixture
def replicas(
    cluster: Cluster, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ChartReplicas]:
    made = ChartReplicas(
        cluster,
        namespace,
        tmp_path,
        values=(
            f"sharding.shards={SHARDS}",
            f"sharding.leaseSeconds={LEASE:.0f}",
            f"sharding.renewSeconds={RENEW:.0f}",
        ),
    )
    yield made
    made.close()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for process in made.processes:
            print(f"\n----- {process.log_path.name} -----\n{process.log()[-6000:]}")


def holders(replicas: ChartReplicas) -> dict[int, str | None]:
    found: dict[int, str | None] = {}
    for lease in replicas.leases():
        labels = lease["metadata"].get("labels") or {}
        if labels.get(LABEL_LEASE_ROLE) == "shard":
            found[int(labels[LABEL_SHARD])] = (lease.get("spec") or {}).get("holderIdentity")
    return found


def cached(process: OperatorProcess, metric: str = "herdsman_rollouts_cached") -> int:
    """A gauge of the replica's: `herdsman_rollouts_cached`, the Rollouts its watches show it,
    or `herdsman_server_groups_cached`, their server groups."""
    assert process.command is not None
    (port,) = [a.split("=", 1)[1] for a in process.command if a.startswith("--metrics-port=")]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    (value,) = re.findall(rf"^{metric} (\S+)$", text, re.MULTILINE)
    return int(float(value))


def wait_views(
    processes: dict[str, OperatorProcess],
    shards_each: dict[str, int],
    replicas: ChartReplicas,
    rollouts: Rollouts,
    names: list[str],
) -> None:
    """Each replica caches the Rollouts of the shards it holds, and only those; and their
    server groups, each labelled at its creation with its Rollout's shard."""
    want = {name: count * PER_SHARD for name, count in shards_each.items()}
    wait_until(
        lambda: {name: cached(p) for name, p in processes.items()} == want,
        timeout=20,
        what=f"each replica to see only its shards' Rollouts ({want})",
        describe=lambda: str({name: cached(p) for name, p in processes.items()}),
    )
    namespace = rollouts.ns
    groups: Counter[int] = Counter()
    for name in names:
        shard = shard_of(namespace, name, SHARDS)
        for rs in rollouts.groups(name).values():
            assert rs["metadata"]["labels"].get(LABEL_OWNER_SHARD) == owner_shard(shard, SHARDS)
            groups[shard] += 1
    held = holders(replicas)
    want_groups = {
        name: sum(n for s, n in groups.items() if held.get(s) == f"herdsman-pod-{name}")
        for name in processes
    }
    assert sum(want_groups.values()) == sum(groups.values()), held

    def groups_cached() -> dict[str, int]:
        return {n: cached(p, "herdsman_server_groups_cached") for n, p in processes.items()}

    wait_until(
        lambda: groups_cached() == want_groups,
        timeout=20,
        what=f"each replica to see only its shards' server groups ({want_groups})",
        describe=lambda: str(groups_cached()),
    )


def wait_split(replicas: ChartReplicas, expected: dict[str, int], timeout: float) -> None:
    wait_until(
        lambda: (
            Counter(v for v in holders(replicas).values() if v) == expected
            and len(holders(replicas)) == SHARDS
        ),
        timeout=timeout,
        what=f"the shards split {expected}",
        describe=lambda: str(holders(replicas)),
    )


def spread(namespace: str) -> list[str]:
    """Rollout names, PER_SHARD in each shard (the namespace is random: so is the hash)."""
    names: dict[int, list[str]] = defaultdict(list)
    for i in range(10_000):
        name = f"app{i:02d}"
        shard = shard_of(namespace, name, SHARDS)
        if len(names[shard]) < PER_SHARD:
            names[shard].append(name)
        if sum(map(len, names.values())) == SHARDS * PER_SHARD:
            break
    return sorted(n for found in names.values() for n in found)


def wait_all_healthy(
    rollouts: Rollouts, revision: str, timeout: float, names: list[str] | None = None
) -> None:
    names = names or spread(rollouts.ns)

    def healthy() -> list[str]:
        return [
            n
            for n in names
            if not (
                (s := rollouts.status(n)).get("phase") == "Healthy"
                and s.get("stableServerGroup") == f"{n}-{revision}"
            )
        ]

    wait_until(
        lambda: not healthy(),
        timeout=timeout,
        what=f"every rollout healthy at {revision}",
        describe=lambda: f"not yet: {healthy()}",
    )


# --- reading the operators' logs ----------------------------------------------------------------

OWNERSHIP = re.compile(
    r"^(?P<time>\S+) \w+\s+herdsman\.shards: shard (?P<shard>\d+)"
    r" (?P<what>acquired|released|lost)\b.*? by (?P<who>[^\s:]+)"
)


def moment(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@dataclass
class Interval:
    replica: str
    shard: int
    start: float
    end: float


def ownership(process: OperatorProcess, died: float | None) -> list[Interval]:
    """This replica's intervals of ownership of each shard, from its own log lines."""
    intervals: list[Interval] = []
    open_: dict[int, Interval] = {}
    for line in process.log().splitlines():
        m = OWNERSHIP.match(line)
        if not m:
            continue
        shard, at = int(m["shard"]), moment(m["time"])
        if m["what"] == "acquired":
            assert shard not in open_, f"{m['who']} acquired shard {shard} twice: {line}"
            open_[shard] = Interval(m["who"], shard, at, float("inf"))
        elif shard in open_:
            closed = open_.pop(shard)
            closed.end = at
            intervals.append(closed)
    for interval in open_.values():
        interval.end = died if died is not None else float("inf")
        intervals.append(interval)
    return intervals


def finishers(processes: tuple[OperatorProcess, ...], name: str) -> list[str] | None:
    """The replicas that logged revision 2's RolloutCompleted for `name`, or None if none has."""
    found = [
        p.env["POD_ID"]
        for p in processes
        for t in p.transitions(name)
        if t.reason == "RolloutCompleted" and t.revision == "2"
    ]
    return found or None


def check_no_double_action(
    namespace: str, processes: list[OperatorProcess], deaths: dict[str, float]
) -> int:
    """Fails if two replicas' ownerships of a shard overlap, or if a replica logged a transition
    of a Rollout outside its ownership of that Rollout's shard. Returns the transitions checked."""
    intervals: list[Interval] = []
    for process in processes:
        name = process.env["POD_ID"]
        intervals += ownership(process, deaths.get(name))
    by_shard: dict[int, list[Interval]] = defaultdict(list)
    for interval in intervals:
        by_shard[interval.shard].append(interval)
    for shard, found in by_shard.items():
        found.sort(key=lambda i: i.start)
        for before, after in itertools.pairwise(found):
            assert before.end <= after.start, (
                f"shard {shard} held by {before.replica} and {after.replica} at once: "
                f"{before} / {after}"
            )
    checked = 0
    for process in processes:
        name = process.env["POD_ID"]
        for t in process.transitions():
            assert t.replica == name, f"a transition line without its replica: {t}"
            ns, rollout_name = t.rollout.split("/")
            assert ns == namespace
            shard = shard_of(ns, rollout_name, SHARDS)
            at = moment(t.time)
            assert any(
                i.replica == name and i.shard == shard and i.start <= at <= i.end
                for i in by_shard[shard]
            ), f"{name} acted on {t.rollout} (shard {shard}) without holding it: {t}"
            checked += 1
    return checked


# --- the test -----------------------------------------------------------------------------------


def forged_checks_fail(
    namespace: str, processes: list[OperatorProcess], killed_at: float, tmp_path: Path
) -> None:
    """The log check itself can fail: a transition forged into d's log for a shard d never
    held, and a forged acquisition overlapping another replica's, are both caught."""
    d = processes[-1]
    held = {i.shard for i in ownership(d, None)}
    foreign = next(s for s in range(SHARDS) if s not in held)
    # Any name in that shard will do (a shard may have none of the test's Rollouts).
    victim = next(
        n for i in range(1000) if shard_of(namespace, n := f"forged{i}", SHARDS) == foreign
    )
    # In the middle of another replica's ownership of that shard.
    other = next(
        i
        for p in processes[:-1]
        for i in ownership(p, killed_at if p is processes[0] else None)
        if i.shard == foreign
    )
    middle = (other.start + min(other.end, time.time())) / 2
    stamp = datetime.fromtimestamp(middle, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    for forged, expected in [
        (
            f"{stamp} {namespace}/{victim} rev=3 step=1/4 weight=25 replica=herdsman-pod-d"
            " StepStarted: forged",
            "without holding it",
        ),
        (f"{stamp} INFO    herdsman.shards: shard {foreign} acquired by herdsman-pod-d (was x)",
         "at once"),
    ]:  # fmt: skip
        path = tmp_path / "forged.log"
        path.write_text(d.log() + forged + "\n")
        fake = OperatorProcess(
            cluster=d.cluster, namespaces=[], log_path=path, env={"POD_ID": "herdsman-pod-d"}
        )
        with pytest.raises(AssertionError, match=expected):
            check_no_double_action(
                namespace, [*processes[:-1], fake], {"herdsman-pod-a": killed_at}
            )


def test_three_sharded_replicas_share_the_rollouts_survive_a_kill_and_rebalance_for_a_new_one(
    rollouts: Rollouts, replicas: ChartReplicas, namespace: str, tmp_path: Path
) -> None:
    command = replicas.command()
    assert f"--shards={SHARDS}" in command
    assert "--standalone" in command
    assert "--require-peering" not in command
    started = time.monotonic()
    names = spread(namespace)
    a, b, c = (replicas.start(f"herdsman-pod-{n}") for n in "abc")
    wait_split(replicas, {"herdsman-pod-a": 2, "herdsman-pod-b": 2, "herdsman-pod-c": 2}, 30)

    for name in names:
        rollouts.create(rollout(name, replicas=2, steps=STEPS))
    wait_all_healthy(rollouts, "v001", timeout=90)
    for name in names:  # the owner records each Rollout's shard as a label
        labels = rollouts.get(name)["metadata"].get("labels") or {}
        assert labels.get(LABEL_SHARD) == str(shard_of(namespace, name, SHARDS))
    wait_views({"a": a, "b": b, "c": c}, {"a": 2, "b": 2, "c": 2}, replicas, rollouts, names)
    assert {t.replica for p in (a, b, c) for t in p.transitions()} == {
        "herdsman-pod-a",
        "herdsman-pod-b",
        "herdsman-pod-c",
    }, "not every replica acted on its shards"

    # v2: kill a mid-canary, during the 8 s pause.
    held_by_a = {s for s, who in holders(replicas).items() if who == "herdsman-pod-a"}
    of_a = [n for n in names if shard_of(namespace, n, SHARDS) in held_by_a]
    for name in names:
        rollouts.set_image(IMAGE_V2, name)
    assert len(of_a) == 2 * PER_SHARD
    for name in of_a:
        rollouts.wait(lambda s: s.get("step") == "2/4", name=name, timeout=30, what="the pause")
    killed_at = time.time()
    a.kill()
    moved = wait_until(
        lambda: (lambda h: h if all(h.get(s) in ("herdsman-pod-b", "herdsman-pod-c")
                                    for s in range(SHARDS)) else None)(holders(replicas)),
        timeout=LEASE * 3 + 10,
        interval=0.25,
        what="a's shards to move",
        describe=lambda: str(holders(replicas)),
    )  # fmt: skip
    takeover = time.time() - killed_at
    print(f"\nshards of the killed replica moved after {takeover:.1f}s; {moved}")
    assert takeover <= LEASE + 2 * RENEW + 4
    assert Counter(moved.values()) == {"herdsman-pod-b": 3, "herdsman-pod-c": 3}
    wait_all_healthy(rollouts, "v002", timeout=90)
    wait_views({"b": b, "c": c}, {"b": 3, "c": 3}, replicas, rollouts, names)
    for name in of_a:
        # The line follows the status write the wait above saw by a few milliseconds.
        finished = wait_until(
            functools.partial(finishers, (b, c), name),
            timeout=10,
            what=f"{name}'s RolloutCompleted line",
        )
        assert len(finished) == 1, f"{name}: finished by {finished}"

    # v3: a fourth replica joins mid-canary; b and c release one shard each for it.
    for name in names:
        rollouts.set_image(IMAGE_V3, name)
    d = replicas.start("herdsman-pod-d")
    wait_split(replicas, {"herdsman-pod-b": 2, "herdsman-pod-c": 2, "herdsman-pod-d": 2}, 30)
    wait_all_healthy(rollouts, "v003", timeout=90)
    wait_views({"b": b, "c": c, "d": d}, {"b": 2, "c": 2, "d": 2}, replicas, rollouts, names)
    released = [
        line for p in (b, c) for line in p.log().splitlines() if "released for rebalancing" in line
    ]
    assert len(released) >= 2, released

    processes = [a, b, c, d]
    checked = check_no_double_action(namespace, processes, {"herdsman-pod-a": killed_at})
    print(f"{checked} transitions checked against the ownership intervals")
    assert checked >= len(names) * 3
    forged_checks_fail(namespace, processes, killed_at, tmp_path)
    # No step of any revision was announced twice (a takeover carries on, never repeats).
    for name in names:
        steps = Counter(
            (t.revision, t.step) for p in processes for t in p.transitions(name)
            if t.reason == "StepStarted"
        )  # fmt: skip
        assert max(steps.values()) == 1, f"{name}: {steps}"
    for process in processes:
        assert not process.errors(), process.errors()
    print(f"whole scenario: {time.monotonic() - started:.0f}s")


def test_rollouts_labelled_for_no_shard_or_the_wrong_one_reach_their_owner_and_finish(
    rollouts: Rollouts, replicas: ChartReplicas, namespace: str
) -> None:
    """Each replica watches only its shards' labels, so a Rollout whose label names no shard
    (from another shard count: 99) or the wrong one (the count changed from 3 to 6) must still
    reach the replica its hash names. The first comes through the watch of unlabelled
    Rollouts, which every replica has; the second only through its label's shard, whose holder
    moves the label."""
    a, b = (replicas.start(f"herdsman-pod-{n}") for n in "ab")
    wait_split(replicas, {"herdsman-pod-a": 3, "herdsman-pod-b": 3}, 30)
    names = spread(namespace)[:4]
    owner = holders(replicas)

    def elsewhere(name: str) -> str:
        """A shard held by the replica that does not own `name`'s hash."""
        mine = owner[shard_of(namespace, name, SHARDS)]
        return str(next(s for s in range(SHARDS) if owner[s] != mine))

    wrong = {name: "99" if i % 2 else elsewhere(name) for i, name in enumerate(names)}
    for name, label in wrong.items():
        manifest = rollout(name, replicas=2, steps=STEPS)
        manifest["metadata"].setdefault("labels", {})[LABEL_SHARD] = label
        rollouts.create(manifest)
    wait_all_healthy(rollouts, "v001", timeout=60, names=names)
    for name in names:
        labels = rollouts.get(name)["metadata"].get("labels") or {}
        assert labels.get(LABEL_SHARD) == str(shard_of(namespace, name, SHARDS)), name
    # Only the holder of a wrong label's shard sees that Rollout: it moves the label.
    assert holders(replicas) == owner
    moved = {name for name, label in wrong.items() if label != "99"}
    relabelled = {
        m[1] for p in (a, b) for m in re.finditer(r"/(\S+): relabelled from shard", p.log())
    }
    assert relabelled == moved
    assert wait_until(
        lambda: cached(a) + cached(b) == len(names),
        timeout=20,
        what="each Rollout to be cached by its owner only",
        describe=lambda: f"a={cached(a)} b={cached(b)}",
    )

    # Server groups labelled under another shard count (stale) or not at all (from before
    # sharding): no shard's view selects them, so they reach every replica through the
    # unlabelled view. Their owner must still see them: a stable group it missed would look
    # gone, to be created again, and the release would start from nothing.
    stale = {names[0]: "1-of-3", names[1]: None}
    for name, value in stale.items():
        label = f"{LABEL_OWNER_SHARD}={value}" if value else f"{LABEL_OWNER_SHARD}-"
        replicas.cluster.kubectl(
            "label", "rs", f"{name}-v001", "-n", namespace, "--overwrite", label
        )
    uids = {n: rollouts.groups(n)[f"{n}-v001"]["metadata"]["uid"] for n in stale}
    for name in stale:
        rollouts.set_image(IMAGE_V2, name)
    wait_all_healthy(rollouts, "v002", timeout=60, names=list(stale))
    for name in stale:
        groups = rollouts.groups(name)
        assert sorted(groups) == [f"{name}-v001", f"{name}-v002"], name
        assert groups[f"{name}-v001"]["metadata"]["uid"] == uids[name], f"{name}: re-created"
        assert groups[f"{name}-v001"]["metadata"]["labels"].get(LABEL_OWNER_SHARD) == stale[name]
        steps = [
            t.step for p in (a, b) for t in p.transitions(name)
            if t.reason == "StepStarted" and t.revision == "2"
        ]  # fmt: skip
        assert len(steps) == len(STEPS), f"{name}: the canary's steps were {steps}"

    check_no_double_action(namespace, [a, b], {})
    for process in (a, b):
        assert not process.errors(), process.errors()

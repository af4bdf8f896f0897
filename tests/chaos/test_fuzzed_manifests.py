"""Generated manifests: lint and the API server agree on every one, and the operator survives all.

Over a thousand Rollouts and AnalysisTemplates, generated from the CRD schema (hypothesis) and
mutated from the examples, are linted and submitted to the real API server (a server-side dry
run, strict field validation, in parallel). Each must be either
- refused by both, naming the same field, or
- accepted by the API server, and then lint either accepts it too or refuses it only for what the
  operator itself refuses (its `InvalidSpec` checks).
A sample of the accepted Rollouts is then created for real in front of the operator: each is
reconciled (status observes its generation), those lint found semantically wrong carry an
`InvalidSpec` condition (others may too: a Service they name does not exist here), and the
operator logs no traceback and never exits.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from harness import manifests as gen
from harness.chaosreport import MANIFESTS, REPORT
from harness.cluster import Cluster, wait_until
from harness.operator import OperatorProcess
from herdsman.cli.lint import Document, lint_object
from herdsman.cluster.kube import ANALYSIS_TEMPLATES, ROLLOUTS

pytestmark = pytest.mark.chaos

CREATE = 120  # accepted Rollouts created for real (InvalidSpec ones first)


def url_for(namespace: str) -> Any:
    def url(body: gen.Manifest) -> str:
        kind = body.get("kind")
        return (ANALYSIS_TEMPLATES if kind == "AnalysisTemplate" else ROLLOUTS).url(namespace)

    return url


def semantic_only(doc: Document) -> bool:
    """Lint's errors are all ones the operator reports as InvalidSpec (the schema passed)."""
    return doc.rollout is not None or all("the operator refuses it" in e.detail for e in doc.errors)


def invalid_spec(status: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "InvalidSpec" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def test_every_manifest_is_refused_by_both_or_accepted_and_handled(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    started = time.monotonic()
    bodies = gen.generate(MANIFESTS, seed=16)
    assert len(bodies) >= MANIFESTS
    docs = [lint_object(b) for b in bodies]
    verdicts = gen.submit_all(cluster.rest, url_for(namespace), bodies, dry_run=True)
    print(
        f"\n{len(bodies)} manifests generated, linted and dry-run in {time.monotonic() - started:.1f}s"
    )

    problems: list[str] = []
    expect_invalid: list[gen.Manifest] = []
    expect_clean: list[gen.Manifest] = []
    for body, doc, verdict in zip(bodies, docs, verdicts, strict=True):
        name = body["metadata"]["name"]
        lint_fields = {e.path for e in doc.errors}
        REPORT.manifests["tried"] += 1
        if verdict.status >= 500:
            problems.append(f"{name}: the API server failed: {verdict.text}")
        elif not verdict.accepted:
            REPORT.manifests["refused"] += 1
            if not doc.errors:
                problems.append(
                    f"{name}: refused by the server ({verdict.text}) but lint accepts it"
                )
            elif not gen.same_field(lint_fields, verdict.fields):
                problems.append(
                    f"{name}: server names {sorted(verdict.fields)} ({verdict.text[:300]}),"
                    f" lint {sorted(lint_fields)}"
                )
            else:
                REPORT.manifests["same_field"] += 1
        else:
            REPORT.manifests["accepted"] += 1
            if doc.errors and not semantic_only(doc):
                problems.append(f"{name}: accepted by the server but lint refuses: {doc.errors}")
            elif body["kind"] == "Rollout":
                (expect_invalid if doc.errors else expect_clean).append(body)
            if doc.errors:
                REPORT.manifests["invalid_spec"] += 1
    for p in problems:
        REPORT.violation(f"manifest {p}")
    assert not problems, "\n".join(problems[:20])
    # Both outcomes must be well represented, or the mix proves little.
    assert REPORT.manifests["accepted"] >= len(bodies) // 20, "too few manifests reach the operator"
    assert REPORT.manifests["refused"] >= len(bodies) // 2, "too few manifests exercise refusals"

    rng = random.Random(16)
    chosen = expect_invalid[: CREATE // 2]
    chosen += rng.sample(expect_clean, min(len(expect_clean), CREATE - len(chosen)))
    created = gen.submit_all(cluster.rest, url_for(namespace), chosen, dry_run=False)
    refused_now = [v.text for v in created if not v.accepted]
    assert not refused_now, refused_now[:5]
    REPORT.manifests["created"] += len(chosen)
    wanted_invalid = {b["metadata"]["name"] for b in chosen if b in expect_invalid}

    def handled() -> list[str] | None:
        waiting = []
        for item in cluster.rest.list(ROLLOUTS.url(namespace)):
            name, status = item["metadata"]["name"], item.get("status") or {}
            if status.get("observedGeneration") != item["metadata"].get("generation"):
                waiting.append(f"{name}: not observed")
            elif name in wanted_invalid and not invalid_spec(status):
                waiting.append(
                    f"{name}: InvalidSpec {invalid_spec(status)}: {status.get('message')}"
                )
        return None if waiting else ["ok"]

    try:
        wait_until(handled, timeout=180, interval=2, what="every created Rollout handled")
    except AssertionError:
        left = []
        for item in cluster.rest.list(ROLLOUTS.url(namespace)):
            status = item.get("status") or {}
            name = item["metadata"]["name"]
            if (name in wanted_invalid and not invalid_spec(status)) or status.get(
                "observedGeneration"
            ) != item["metadata"].get("generation"):
                left.append(f"{name} (want InvalidSpec {name in wanted_invalid}): {status}")
                REPORT.violation(f"manifest {name} not handled as expected")
        raise AssertionError("\n".join(left[:10])) from None
    assert operator.alive, "the operator exited"
    # Kopf logs its own retried API errors at ERROR; a crash is a traceback.
    crashes = [line for line in operator.log().splitlines() if "Traceback" in line]
    for line in crashes:
        REPORT.violation(f"operator log: {line}")
    assert not crashes, crashes[:10]
    print(f"fuzzed manifests done in {time.monotonic() - started:.1f}s")

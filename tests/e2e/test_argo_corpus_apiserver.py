"""Argo Rollouts' own manifests, apiVersion changed: the real API server agrees with lint.

Every Rollout, AnalysisTemplate and ClusterAnalysisTemplate in ../shared/argo-corpus is linted
and sent to the API server as a server-side apply with dryRun=All (nothing is stored) and
strict field validation. A document lint accepts must be accepted; a document lint refuses for
a schema reason (the CRD's structure or a CEL rule) must be refused, naming a field lint named.
What lint refuses beyond the schema — checks the operator's model or its InvalidSpec make, such
as resource quantities or a route no router manages — the API server takes, by design (the
operator then holds the Rollout as InvalidSpec); those are counted, not compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.argo_corpus import CorpusDocument, corpus_dir, documents
from harness.cluster import Cluster
from herdsman.cli.lint import lint_object, schema_for
from herdsman.cli.schema import validate
from herdsman.cluster.experiment_paths import EXPERIMENTS
from herdsman.cluster.kube import (
    ANALYSIS_TEMPLATES,
    CLUSTER_ANALYSIS_TEMPLATES,
    ROLLOUTS,
    KubeError,
)
from herdsman.cluster.kube import Path as KPath

pytestmark = pytest.mark.e2e

PATHS: dict[str, KPath] = {
    "Rollout": ROLLOUTS,
    "AnalysisTemplate": ANALYSIS_TEMPLATES,
    "ClusterAnalysisTemplate": CLUSTER_ANALYSIS_TEMPLATES,
    "Experiment": EXPERIMENTS,
}


@pytest.fixture(scope="session")
def corpus() -> Path:
    # Session-scoped and requested first, so a missing corpus skips (or, under CI, fails)
    # before the control plane is started for nothing.
    return corpus_dir()


def dry_run_apply(cluster: Cluster, namespace: str, doc: CorpusDocument) -> str | None:
    """The API server's refusal message, or None when it would store the document."""
    body = json.loads(json.dumps(doc.body))
    meta = body.setdefault("metadata", {})
    meta.pop("namespace", None)
    name = meta.get("name")
    if not name:
        return "metadata.name: Required value"
    path = PATHS[doc.kind]
    url = path.url(namespace if path.namespaced else None, name)
    query = {"fieldManager": "corpus-test", "dryRun": "All", "fieldValidation": "Strict"}
    try:
        cluster.rest.call(
            "PATCH", url, query, json.dumps(body), "application/apply-patch+yaml", 30.0
        )
    except KubeError as err:
        return err.message
    return None


def test_the_api_server_agrees_with_lint_on_every_corpus_document(
    corpus: Path, cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    disagreements: list[str] = []
    accepted = refused_by_both = beyond_schema = 0
    for doc in documents(corpus):
        result = lint_object(doc.body, source=doc.id)
        refusal = dry_run_apply(cluster, namespace, doc)
        if not result.errors:
            if refusal is not None:
                disagreements.append(f"{doc.id}: lint accepts, the API server refuses: {refusal}")
            else:
                accepted += 1
            continue
        schema = schema_for(doc.kind)
        assert schema is not None
        body = {k: v for k, v in doc.body.items() if k != "status"}
        _, schema_errors, _ = validate(body, schema)
        if not schema_errors:
            beyond_schema += 1  # the model or InvalidSpec refuses it; the CRD need not
            continue
        if refusal is None:
            disagreements.append(
                f"{doc.id}: lint refuses ({schema_errors[0]}), the API server accepts"
            )
        elif not any(e.path and e.path in refusal for e in schema_errors):
            disagreements.append(
                f"{doc.id}: refused by both, for different fields: lint "
                f"{[e.path for e in schema_errors]}, API server: {refusal[:300]}"
            )
        else:
            refused_by_both += 1
    with capsys.disabled():
        print(
            f"\nArgo corpus on the API server: {accepted} accepted by lint and the API server,"
            f" {refused_by_both} refused by both naming the same field,"
            f" {beyond_schema} refused by lint beyond the schema (operator-side checks)"
        )
    assert accepted > 0
    assert not disagreements, "\n".join(disagreements)

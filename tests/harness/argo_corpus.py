"""Argo Rollouts' own manifests (../shared/argo-corpus): the compatibility target.

The corpus is read where it lies and never copied into the project. Each document of kind
Rollout, AnalysisTemplate, ClusterAnalysisTemplate or Experiment gets exactly one change, its apiVersion
(`argoproj.io/v1alpha1` -> `herdsman.dev/v1alpha1`); everything else is Argo's, byte for byte.

A document is expected to be accepted unless it is listed below with the reason it is not:
`ARGO_REFUSES` holds what Argo itself refuses (its negative tests, and harness templates whose
placeholders are filled in by Argo's Go test code), `HERDSMAN_REFUSES` what Herdsman refuses on
purpose, with the field it names. `PENDING` lists what is not supported yet, tagged with the
issue that brings it; the unit test fails when a pending document already behaves as expected,
so the list only ever shrinks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cluster import IN_CI, ROOT

TARGET_KINDS = ("Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate", "Experiment")
ARGO_API_VERSION = "argoproj.io/v1alpha1"
HERDSMAN_API_VERSION = "herdsman.dev/v1alpha1"

# Upstream defects: files that are not YAML at all (see the corpus's SOURCE.md).
NOT_YAML = {
    "examples__traffic-management__rollout-linkerd.yaml": "unquoted {{...}} in a mapping",
    "examples__helm-blue-green__templates__rollout.yaml": "a Helm template, not YAML",
}

ARGO_REFUSES: dict[str, str] = {
    "docs__features__analysis.md__L136.yaml#0": "args[].value is an integer; Argo's CRD wants a string",
    "docs__features__analysis.md__L217.yaml#0": "args[].value is an integer; Argo's CRD wants a string",
    "test__e2e__expectedfailures__malformed-rollout.yaml#0": "resources.requests.memory: invalid",
    "test__e2e__expectedfailures__malformed-rollout-ephemeral.yaml#0": "resources.requests.memory: invalid",
    "test__e2e__expectedfailures__malformed-analysistemplate.yaml#0": "resources.requests.memory: invalid",
    "test__e2e__expectedfailures__malformed-clusteranalysistemplate.yaml#0": "resources.requests.memory: invalid",
    "test__e2e__functional__bluegreen-duration-template.yaml#2": "placeholder ROLLOUT_NAME",
    "test__e2e__functional__canary-duration-template.yaml#0": "placeholder ROLLOUT_NAME",
    "test__e2e__functional__nginx-template.yaml#3": "placeholder REPLACEME",
    "test__e2e__step-plugin__template-rollout.yaml#0": "placeholder $$name$$",
    # Argo's Kayenta docs predate its CRD: `thresholds` (the CRD: `threshold`), and no
    # configurationAccountName, metricsAccountName, storageAccountName or scopes[].region, all
    # of which Argo's CRD requires.
    "docs__analysis__kayenta.md__L124.yaml#0": "kayenta: required account names, threshold, region missing",
    "docs__analysis__kayenta.md__L48.yaml#0": "kayenta: required account names, threshold, region missing",
}

# Refused on purpose, with a message of our own (not the schema's "unknown field"): the value
# is the field the refusal must name.
HERDSMAN_REFUSES: dict[str, str] = {
    # Argo's graphite docs say `results[0]`: expr refuses the unknown name, but Argo compiles a
    # condition only when it measures, so every measurement would be an Error. Lint says so now.
    "docs__analysis__graphite.md__L5.yaml#0": "spec.metrics[0].successCondition",
    "test__e2e__step-plugin__disabled-rollout.yaml#0": "spec.strategy.canary.steps[0].plugin",
    "test__e2e__step-plugin__invalid-rollout.yaml#0": "spec.strategy.canary.steps[0].plugin",
}

# Not supported yet: document -> the issue that brings it.
PENDING: dict[str, str] = {}


@dataclass(frozen=True)
class CorpusDocument:
    id: str  # "<file>#<index of the document in the file>"
    kind: str
    body: dict[str, Any]  # the document with only its apiVersion changed

    @property
    def expect_refused(self) -> bool:
        return self.id in ARGO_REFUSES or self.id in HERDSMAN_REFUSES


def corpus_dir() -> Path:
    """Where the corpus lies; a missing corpus fails under CI and skips, saying why, elsewhere."""
    path = Path(os.environ.get("HERDSMAN_ARGO_CORPUS", ROOT.parent / "shared" / "argo-corpus"))
    if not (path / "SOURCE.md").is_file():
        reason = (
            f"Argo Rollouts corpus not found at {path} (set HERDSMAN_ARGO_CORPUS to a directory"
            " holding Argo's manifests and SOURCE.md)"
        )
        if IN_CI:
            pytest.fail(f"under CI=true the corpus is required: {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def converted(document: dict[str, Any]) -> dict[str, Any]:
    """The document with its apiVersion moved to Herdsman's group, nothing else changed."""
    if document.get("kind") in TARGET_KINDS and document.get("apiVersion") == ARGO_API_VERSION:
        return {**document, "apiVersion": HERDSMAN_API_VERSION}
    return document


def documents(root: Path) -> Iterator[CorpusDocument]:
    for path in sorted(root.glob("*.yaml")):
        if path.name in NOT_YAML:
            continue
        for index, item in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(item, dict) and item.get("kind") in TARGET_KINDS:
                yield CorpusDocument(f"{path.name}#{index}", item["kind"], converted(item))


def unusable_files(root: Path) -> list[str]:
    """Files that do not parse as YAML; each must be one of the known upstream defects."""
    bad = []
    for path in sorted(root.glob("*.yaml")):
        try:
            list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            bad.append(path.name)
    return bad

"""Argo Rollouts' own manifests (../shared/argo-corpus): the compatibility target.

The corpus is read where it lies and never copied into the project. Each document of kind
Rollout, AnalysisTemplate or ClusterAnalysisTemplate gets exactly one change, its apiVersion
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

TARGET_KINDS = ("Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate")
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
    "test__e2e__step-plugin__disabled-rollout.yaml#0": "spec.strategy.canary.steps[0].plugin",
    "test__e2e__step-plugin__invalid-rollout.yaml#0": "spec.strategy.canary.steps[0].plugin",
}

# Not supported yet: document -> the issue that brings it.
PENDING: dict[str, str] = {
    # issue 11: the Rollout API
    "docs__migrating.md__L67.yaml#0": "11 workloadRef",
    "examples__rollout-template-ref.yaml#1": "11 workloadRef",
    "examples__workload-ref__workload-ref.yaml#1": "11 workloadRef",
    "test__e2e__functional_test.go__L1194.yaml#1": "11 workloadRef",
    "test__e2e__functional_test.go__L1248.yaml#1": "11 workloadRef",
    "test__e2e__functional_test.go__L1454.yaml#1": "11 workloadRef",
    "test__e2e__functional_test.go__L1509.yaml#1": "11 workloadRef",
    "test__e2e__functional_test.go__L1566.yaml#1": "11 workloadRef",
    "test__e2e__functional_test.go__L1659.yaml#1": "11 workloadRef",
    "test__e2e__functional_test.go__L1757.yaml#1": "11 workloadRef",
    "examples__rollout-baseline-vs-canary.yaml#0": "11 experiment step",
    "examples__rollout-canary-preview.yaml#0": "11 experiment step",
    "examples__rollout-experiment-step.yaml#0": "11 experiment step",
    "examples__traffic-routing-experiment-step__istio-host-split-experiment-step.yaml#3": "11 experiment step",
    "examples__traffic-routing-experiment-step__rollout-smi-experiment-step.yaml#3": "11 experiment step",
    "test__e2e__functional__rollout-experiment-analysis.yaml#1": "11 experiment step",
    "test__e2e__istio__istio-host-split-experiment-step.yaml#3": "11 experiment step",
    "test__e2e__istio__istio-subset-split-experiment-step.yaml#3": "11 experiment step",
    "test__e2e__smi__rollout-smi-experiment.yaml#3": "11 experiment step",
    "test__e2e__bluegreen_test.go__L70.yaml#1": "11 ephemeral metadata",
    "test__e2e__canary_test.go__L341.yaml#0": "11 ephemeral metadata",
    "test__e2e__functional__ephemeral-labels.yaml#0": "11 ephemeral metadata",
    "test__e2e__functional__rollout-rollback-window.yaml#0": "11 rollbackWindow",
    "test__e2e__step-plugin__disabled-rollout.yaml#0": "11 a clear refusal of step plugins",
    "test__e2e__step-plugin__invalid-rollout.yaml#0": "11 a clear refusal of step plugins",
    "test__e2e__expectedfailures__malformed-rollout.yaml#0": "11 resource quantities checked",
    "test__e2e__expectedfailures__malformed-rollout-ephemeral.yaml#0": "11 resource quantities checked",
    "test__e2e__istio__istio-subset-split-in-stable-downscale-after-canary-abort.yaml#3": "11+13 metadata, long names",
    # issue 12: analysis
    "docs__features__analysis.md__L379.yaml#1": "12 template composition",
    "docs__features__analysis.md__L434.yaml#2": "12 template composition",
    "examples__analysis-templates.yaml#0": "12 job",
    "examples__analysis-templates.yaml#1": "12 job",
    "examples__cluster-analysis-templates.yaml#0": "12 job",
    "examples__traffic-management__job.yaml#0": "12 job",
    "test__e2e__analysis_test.go__L596.yaml#0": "12 metrics with no condition",
    "test__e2e__analysis_test.go__L617.yaml#0": "12 metrics with no condition",
    "test__e2e__expectedfailures__experiment-failed-analysis.yaml#0": "12 job",
    "test__e2e__functional__analysistemplate-fail-multiple-job.yaml#0": "12 job",
    "test__e2e__functional__analysistemplate-invalid-image-job.yaml#0": "12 job",
    "test__e2e__functional__analysistemplate-long-running-job-deadline.yaml#0": "12 job",
    "test__e2e__functional__analysistemplate-long-running-job.yaml#0": "12 job",
    "test__e2e__functional__analysistemplate-multiple-job.yaml#0": "12 job",
    "test__e2e__functional__analysistemplate-sleep-job.yaml#0": "12 job, {{args}} in count",
    "test__e2e__functional__experiment-dry-run-analysis.yaml#0": "12 job",
    "test__e2e__functional__experiment-measurement-retention-analysis.yaml#0": "12 job",
    "test__e2e__functional__rollout-bg-analysis-withArgs.yaml#2": "12 {{args}} in interval, failureLimit",
    "test__e2e__functional__rollout-experiment-analysis.yaml#0": "12 job",
    "test__e2e__functional__rollout-secret-withArgs.yaml#2": "12 {{args}} in count, interval",
    "test__e2e__functional__rollout-secret.yaml#2": "12 {{args}} in count, interval",
    # issue 13: traffic routers
    "docs__features__traffic-management__apisix.md__L57.yaml#0": "13 apisix",
    "docs__getting-started__ambassador__index.md__L155.yaml#0": "13 ambassador",
    "docs__getting-started__ambassador__index.md__L93.yaml#0": "13 ambassador",
    "examples__ambassador__rollout.yaml#0": "13 ambassador",
    "examples__apisix__rollout.yaml#0": "13 apisix",
    "examples__appmesh__canary-rollout.yaml#1": "13 appMesh",
    "examples__traffic-routing-experiment-step__rollout-alb-experiment-step.yaml#4": "11 experiment",
    "test__e2e__alb__rollout-alb-experiment-no-setweight.yaml#4": "11 experiment",
    "test__e2e__alb__rollout-alb-experiment.yaml#4": "11 experiment",
    "test__e2e__alb__rollout-alb-multi-ingress-experiment-no-setweight.yaml#5": "11 experiment",
    "test__e2e__alb__rollout-alb-multi-ingress-experiment.yaml#5": "11 experiment",
    "test__e2e__apisix__rollout-apisix-canary-set-header.yaml#3": "13 apisix",
    "test__e2e__apisix__rollout-apisix-canary.yaml#3": "13 apisix",
    "test__e2e__appmesh__appmesh-canary-rollout.yaml#8": "13 appMesh",
    "test__e2e__functional__canary-scaledowndelay.yaml#4": "11 scaleDownDelayRevisionLimit",
    "test__e2e__functional__canary-scaledownonabort.yaml#4": "11 scaleDownDelayRevisionLimit",
    "test__e2e__functional__canary-unscaledownonabort.yaml#4": "11 scaleDownDelayRevisionLimit",
}


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

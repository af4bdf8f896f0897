"""The CRD YAML is generated from the pydantic models; this fails when they drift apart."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from herdsman.api.crd import rendered_files

pytestmark = pytest.mark.unit

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_match_the_models() -> None:
    wanted = rendered_files()
    present = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    assert sorted(present) == sorted(wanted), "run `make crds`: the set of CRD files differs"
    for name, text in wanted.items():
        assert present[name] == text, f"crds/{name} drifted from the models: run `make crds`"


@pytest.mark.parametrize("name", sorted(rendered_files()))
def test_every_crd_is_served_with_status_and_a_category(name: str) -> None:
    crd = yaml.safe_load(rendered_files()[name])
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["group"] == "herdsman.dev"
    assert "herdsman" in crd["spec"]["names"]["categories"]
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["properties"]["spec"]["type"] == "object"


def test_rollouts_scale_like_deployments() -> None:
    crd = yaml.safe_load(rendered_files()["rollouts.yaml"])
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    for wanted in ("Phase", "Step", "Weight", "Stable", "Canary", "Age"):
        assert wanted in columns

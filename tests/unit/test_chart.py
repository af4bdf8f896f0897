"""The Helm chart, rendered by the real helm: lint, Kubernetes 1.36 schemas, CRDs, HA and hardening.

No cluster: `helm lint` and `helm template` only. The chart's CRDs are the repository's crds/
through a symlink (charts/herdsman/crds/herdsman -> ../../../crds), so there is one copy; the
tests below prove helm renders, lints and packages exactly those files.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import herdsman
from harness.cluster import CHART, ROOT, helm

pytestmark = pytest.mark.unit

# The test cluster runs 1.36; kubernetes-validate has its schemas.
K8S_VERSION = "1.36.0"
# Kinds without a schema in kubernetes-validate: our own CRDs' kinds are checked by the API
# server in the e2e tests; the ServiceMonitor by the Prometheus Operator's CRD where it exists.
NO_SCHEMA = {"ClusterKopfPeering", "KopfPeering", "ServiceMonitor"}
RELEASE, NAMESPACE = "hd", "ops"


def render(*values: str, include_crds: bool = False) -> list[dict[str, Any]]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for value in values:
        args += ["--set", value]
    if include_crds:
        args.append("--include-crds")
    return [doc for doc in yaml.safe_load_all(helm(*args)) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, got {len(hits)}"
    return hits[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec = find(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    result: dict[str, Any] = spec["containers"][0]
    return result


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def namespaced() -> list[dict[str, Any]]:
    return render("watchNamespaces={shop,payments}")


# --- helm itself ------------------------------------------------------------------------------


def test_helm_lint_passes_in_strict_mode() -> None:
    out = helm("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    out = helm("lint", "--strict", str(CHART), "--set", "watchNamespaces={shop}")
    assert "0 chart(s) failed" in out


VARIANTS = {
    "defaults": [],
    "namespaced": ["watchNamespaces={shop,payments}"],
    "sharded": ["sharding.shards=12", "replicaCount=3"],
    "sharded-namespaced": ["sharding.shards=6", "watchNamespaces={shop}"],
    "everything-on": [
        "metrics.serviceMonitor.enabled=true",
        "webDashboard.enabled=true",
        "webDashboard.actions=true",
        "image.digest=sha256:" + "a" * 64,
        "imagePullSecrets[0].name=regcred",
        "priorityClassName=system-cluster-critical",
        "extraArgs={--log-level,DEBUG}",
        "extraEnv[0].name=HERDSMAN_X",
        "extraEnv[0].value=verbose",
    ],
    "everything-off": [
        "rbac.create=false",
        "serviceAccount.create=false",
        "serviceAccount.name=herdsman-operator",
        "podDisruptionBudget.enabled=false",
        "metrics.service.enabled=false",
        "dashboard.enabled=false",
        "rbac.aggregateToUserRoles=false",
        "replicaCount=1",
    ],
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_is_valid_against_the_kubernetes_schemas(variant: str) -> None:
    docs = render(*VARIANTS[variant], include_crds=True)
    checked = 0
    for doc in docs:
        if doc["kind"] in NO_SCHEMA:
            continue
        # Strict: an unknown field (a typo in a template) is an error, not silently dropped.
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 5


def test_the_values_schema_refuses_what_would_break_the_install() -> None:
    for bad, why in [
        ("replicaCount=0", "minimum"),
        ("watchNamespaces={Not_A_Namespace}", "does not match pattern"),
        ("logFormat=yaml", "value must be one of"),
        ("image.repository=", "minLength"),
        ("typo=1", "additional properties"),
        ("metrics.serviceMonitor.interval=30sec", "does not match pattern"),
        # An env value must be a string: Kubernetes would refuse the Deployment.
        ("extraEnv[0].name=X,extraEnv[0].value=1", "got number, want string"),
        ("sharding.shards=-1", "minimum"),
        ("sharding.leaseSeconds=1", "minimum"),
        ("sharding.shard=6", "additional properties"),
        ("kubeApi.qps=-1", "minimum"),
        ("kubeApi.burst=-1", "minimum"),
    ]:
        out = helm("template", RELEASE, str(CHART), "--set", bad, check=False)
        assert why in out, f"{bad}: {out[-500:]}"


def test_a_service_monitor_without_its_service_is_refused() -> None:
    out = helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.service.enabled=false",
        check=False,
    )
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled" in out


def test_the_chart_and_the_operator_share_one_version() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["appVersion"] == herdsman.__version__
    assert meta["version"] == herdsman.__version__


# --- CRDs: one copy, in crds/ -----------------------------------------------------------------


def _crd_docs(paths: Iterator[Path]) -> dict[str, dict[str, Any]]:
    docs = {}
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["metadata"]["name"]] = doc
    return docs


def test_the_charts_crds_are_the_repositorys_crds_through_a_symlink() -> None:
    link = CHART / "crds" / "herdsman"
    assert link.is_symlink(), "charts/herdsman/crds/herdsman must stay a symlink to crds/"
    assert link.resolve() == (ROOT / "crds").resolve()
    # Relative, so it resolves in any clone.
    assert not Path(link.readlink()).is_absolute()


def test_helm_renders_exactly_the_repository_crds_plus_kopf_peering() -> None:
    rendered = {d["metadata"]["name"]: d for d in render(include_crds=True)}
    rendered_crds = {n: d for n, d in rendered.items() if d["kind"] == "CustomResourceDefinition"}
    ours = _crd_docs((ROOT / "crds").glob("*.yaml"))
    peering = _crd_docs(iter([CHART / "crds" / "kopf-peering.yaml"]))
    assert set(peering) == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    assert set(rendered_crds) == set(ours) | set(peering)
    for name, doc in ours.items():
        assert rendered_crds[name] == doc, f"{name} differs from crds/"


def test_a_packaged_chart_carries_the_crd_files_not_the_link(tmp_path: Path) -> None:
    helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("herdsman-*.tgz")
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for crd in (ROOT / "crds").glob("*.yaml"):
            member = members[f"herdsman/crds/herdsman/{crd.name}"]
            assert member.isfile()
            data = tar.extractfile(member)
            assert data is not None
            assert data.read() == crd.read_bytes()


def test_the_peering_crds_are_what_kopf_looks_for() -> None:
    from kopf._cogs.structs import references

    peering = _crd_docs(iter([CHART / "crds" / "kopf-peering.yaml"]))
    for selector, scope in [
        (references.CLUSTER_PEERINGS_K, "Cluster"),
        (references.NAMESPACED_PEERINGS_K, "Namespaced"),
    ]:
        crd = peering[f"{selector.any_name}.{selector.group}"]
        assert crd["spec"]["scope"] == scope
        (version,) = crd["spec"]["versions"]
        assert version["name"] == selector.version
        # No status subresource: Kopf writes its keep-alives with a patch of the object itself.
        assert "subresources" not in version


# --- HA: two replicas, one acting ---------------------------------------------------------------


def test_two_replicas_run_with_mandatory_peering_and_distinct_priorities(
    default: list[dict[str, Any]],
) -> None:
    deployment = find(default, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    c = container(default)
    assert c["command"] == ["herdsman", "run"]
    args = c["args"]
    # Each pod's priority is its own start time, so two replicas never tie (a tie pauses both).
    assert "--priority=startup" in args
    assert "--peering-lifetime=15" in args
    assert "--require-peering" in args
    assert f"--peering={RELEASE}-herdsman" in args
    assert "--standalone" not in " ".join(args)
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    peering = find(default, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == f"{RELEASE}-herdsman"


def test_every_flag_the_chart_passes_is_one_the_operator_accepts(
    default: list[dict[str, Any]], namespaced: list[dict[str, Any]]
) -> None:
    from herdsman.__main__ import parser

    for docs in (default, namespaced):
        command, args = container(docs)["command"], container(docs)["args"]
        assert command == ["herdsman", "run"]
        parsed = parser().parse_args(["run", *args])
        assert parsed.require_peering
        assert parsed.priority < 0  # --priority=startup: the start time, negated
        assert parsed.metrics_port == 8080
        assert parsed.liveness == "http://0.0.0.0:8081/healthz"
        assert parsed.log_format == "json"
        assert (parsed.kube_qps, parsed.kube_burst) == (200.0, 400)
    args = container(namespaced)["args"]
    assert parser().parse_args(["run", *args]).namespace == ["shop", "payments"]


def test_the_api_rate_limit_is_one_value_away() -> None:
    args = container(render("kubeApi.qps=1000", "kubeApi.burst=2000"))["args"]
    from herdsman.__main__ import parser

    parsed = parser().parse_args(["run", *args])
    assert (parsed.kube_qps, parsed.kube_burst) == (1000.0, 2000)


def test_a_disruption_budget_keeps_one_replica(default: list[dict[str, Any]]) -> None:
    pdb = find(default, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    selector = find(default, "Deployment")["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    strategy = find(default, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_replicas_prefer_different_nodes(default: list[dict[str, Any]]) -> None:
    spec = find(default, "Deployment")["spec"]["template"]["spec"]
    (term,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_namespaced_mode_puts_a_peering_object_in_each_watched_namespace(
    namespaced: list[dict[str, Any]],
) -> None:
    peerings = [d for d in namespaced if d["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["payments", "shop"]
    assert not [d for d in namespaced if d["kind"] == "ClusterKopfPeering"]


# --- sharding: every replica acts, each on its own shards ---------------------------------------


def test_one_value_turns_sharding_on_and_peering_off() -> None:
    from herdsman.__main__ import parser

    docs = render("sharding.shards=12", "replicaCount=3")
    assert find(docs, "Deployment")["spec"]["replicas"] == 3
    args = container(docs)["args"]
    parsed = parser().parse_args(["run", *args])
    assert parsed.shards == 12
    assert parsed.standalone  # sharded replicas do not peer: the Leases decide
    assert not parsed.require_peering
    assert parsed.shard_lease_seconds == 15
    assert parsed.shard_renew_seconds == 5
    assert parsed.lease_namespace == NAMESPACE  # the release's own namespace
    assert parsed.lease_prefix == f"{RELEASE}-herdsman"  # two installs never share Leases
    assert not [d for d in docs if d["kind"] in ("ClusterKopfPeering", "KopfPeering")]
    # POD_ID names the replica in its Leases and its transition lines.
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


@pytest.mark.parametrize("shards", ["0", "1"])
def test_zero_or_one_shard_is_todays_single_acting_replica(shards: str) -> None:
    docs = render(f"sharding.shards={shards}")
    args = container(docs)["args"]
    assert "--require-peering" in args
    assert not [a for a in args if a.startswith("--shards")]
    find(docs, "ClusterKopfPeering")


# --- hardening ----------------------------------------------------------------------------------


def test_the_pod_runs_non_root_read_only_without_capabilities(
    default: list[dict[str, Any]],
) -> None:
    spec = find(default, "Deployment")["spec"]["template"]["spec"]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(default)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # The one writable place is a small in-memory /tmp.
    (mount,) = container(default)["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    (volume,) = spec["volumes"]
    assert volume["emptyDir"]["medium"] == "Memory"


def test_probes_ask_kopfs_liveness_endpoint_and_resources_are_bounded(
    default: list[dict[str, Any]],
) -> None:
    c = container(default)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert f"--liveness=http://0.0.0.0:{ports['health']}/healthz" in c["args"]
    assert f"--metrics-port={ports['metrics']}" in c["args"]
    assert c["resources"]["requests"]["cpu"]
    assert c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]


def test_the_image_defaults_to_the_app_version_and_a_digest_wins() -> None:
    assert container(render())["image"] == f"herdsman:{herdsman.__version__}"
    digest = "sha256:" + "b" * 64
    image = container(render("image.repository=r.example/h", f"image.digest={digest}"))["image"]
    assert image == f"r.example/h@{digest}"


# --- metrics and dashboard ----------------------------------------------------------------------


def test_the_metrics_service_selects_the_pods_metrics_port(default: list[dict[str, Any]]) -> None:
    service = find(default, "Service", f"{RELEASE}-herdsman-metrics")
    selector = find(default, "Deployment")["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    assert not [d for d in default if d["kind"] == "ServiceMonitor"]


def test_the_service_monitor_scrapes_that_service_and_keeps_the_rollouts_namespace() -> None:
    docs = render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.team=x")
    monitor = find(docs, "ServiceMonitor")
    service = find(docs, "Service", f"{RELEASE}-herdsman-metrics")
    assert monitor["metadata"]["labels"]["team"] == "x"
    for key, value in monitor["spec"]["selector"]["matchLabels"].items():
        assert service["metadata"]["labels"][key] == value
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    # The metrics carry a `namespace` label of their own: the rollout's, not the operator pod's.
    assert endpoint["honorLabels"] is True


def test_the_dashboard_configmap_is_labelled_for_the_grafana_sidecar(
    default: list[dict[str, Any]],
) -> None:
    cm = find(default, "ConfigMap", f"{RELEASE}-herdsman-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    on_disk = json.loads((CHART / "dashboards" / "herdsman.json").read_text())
    assert json.loads(cm["data"]["herdsman.json"]) == on_disk
    moved = find(render("dashboard.namespace=monitoring"), "ConfigMap")
    assert moved["metadata"]["namespace"] == "monitoring"


def test_the_web_dashboard_is_off_by_default_and_served_on_its_port_when_enabled(
    default: list[dict[str, Any]],
) -> None:
    assert not any(a.startswith("--dashboard") for a in container(default)["args"])
    assert not [d for d in default if d["metadata"]["name"] == f"{RELEASE}-herdsman-web"]
    docs = render("webDashboard.enabled=true", "webDashboard.port=9000")
    args = container(docs)["args"]
    assert "--dashboard-port=9000" in args
    assert "--dashboard-actions" not in args  # actions stay off unless asked for
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert ports["web"] == 9000
    service = find(docs, "Service", f"{RELEASE}-herdsman-web")
    assert service["spec"]["ports"][0]["targetPort"] == "web"
    acting = render("webDashboard.enabled=true", "webDashboard.actions=true")
    assert "--dashboard-actions" in container(acting)["args"]

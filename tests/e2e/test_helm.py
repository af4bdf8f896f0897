"""The README's `helm install`, run as a new user would, then upgraded and uninstalled.

The pods are KWOK's (no container runs), so this proves what Helm and the API server decide:
the chart installs, its objects are accepted and become ready, the ServiceAccount holds what
the chart grants and nothing beyond, an upgrade can switch to watching one namespace, and an
uninstall removes everything but the CRDs (and so every Rollout).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster import CHART, ROOT, Cluster, wait_until

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"


def readme_commands() -> list[list[str]]:
    """The helm commands of the README's "Install with Helm" section, as argv lists."""
    text = README.read_text()
    section = text.split("## Install with Helm", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert blocks, "the install section has no ```sh block"
    commands = [shlex.split(line) for line in blocks[0].splitlines() if line.startswith("helm ")]
    assert commands, "the install section names no helm command"
    return commands


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.fixture
def readme_install(cluster: Cluster) -> Iterator[tuple[str, str]]:
    (install,) = readme_commands()
    assert install[:2] == ["helm", "install"]
    release, namespace = install[2], option(install, "--namespace")
    assert install[3] == "charts/herdsman"
    if cluster.helm("status", release, "-n", namespace, check=False).startswith("NAME:"):
        pytest.fail(f"release {release} already exists in {namespace}: another run is using it")
    yield release, namespace
    cluster.helm("uninstall", release, "-n", namespace, "--wait", check=False)
    cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false")


def helm_from_repo_root(cluster: Cluster, argv: list[str]) -> str:
    """Run a README command as written: relative paths from the repository root."""
    args = [a if a != "charts/herdsman" else str(CHART) for a in argv[1:]]
    assert Path(CHART).resolve() == (ROOT / "charts" / "herdsman").resolve()
    return cluster.helm(*args)


def can_i(cluster: Cluster, account: str, *what: str) -> bool:
    out = cluster.kubectl("auth", "can-i", *what, f"--as={account}", check=False)
    return out.strip() == "yes"


def test_the_readme_install_works_upgrades_to_one_namespace_and_uninstalls(
    cluster: Cluster, readme_install: tuple[str, str], namespace: str
) -> None:
    release, ns = readme_install
    (install,) = readme_commands()
    notes = helm_from_repo_root(cluster, install)
    assert "STATUS: deployed" in notes
    assert "one acting at a time" in notes
    assert f"kubectl get clusterkopfpeering {release}" in notes
    # The CRD upgrade step the notes give (Helm never upgrades CRDs) applies every one of them.
    (crd_step,) = [line.split() for line in notes.splitlines() if "kubectl apply" in line]
    assert crd_step[:2] == ["kubectl", "apply"]
    applied = cluster.kubectl(
        *[str(ROOT / a) if a.endswith((".yaml", "/")) else a for a in crd_step[1:]],
        "--dry-run=server",
    )
    wanted = {p.stem for p in (ROOT / "crds").glob("*.yaml")} | {
        "kopfpeerings",
        "clusterkopfpeerings",
    }
    assert {line.split("/")[1].split(".")[0] for line in applied.splitlines()} == wanted

    # Both replicas come up (KWOK makes them Ready), spread by the anti-affinity.
    cluster.kubectl("rollout", "status", f"deployment/{release}", "-n", ns, "--timeout=90s")
    deployment = json.loads(cluster.kubectl("get", "deployment", release, "-n", ns, "-o", "json"))
    assert deployment["status"]["readyReplicas"] == 2
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{option(install, '--set').split('=', 1)[1]}:0.1.0"
    for kind, name in [
        ("poddisruptionbudget", release),
        ("service", f"{release}-metrics"),
        ("configmap", f"{release}-dashboard"),
        ("serviceaccount", release),
    ]:
        cluster.kubectl("get", kind, name, "-n", ns)
    cluster.kubectl("get", "clusterkopfpeering", release)
    crds = cluster.kubectl("get", "crd", "-o", "name")
    for crd in ("rollouts.herdsman.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
        assert crd in crds

    # The ServiceAccount holds what the operator calls, everywhere, and nothing more.
    account = f"system:serviceaccount:{ns}:{release}"
    for grant in [
        ("patch", "rollouts.herdsman.dev", "--subresource=status", "-n", namespace),
        ("watch", "replicasets.apps", "-A"),
        ("patch", "services", "-n", namespace),
        ("get", "secrets", "-n", namespace),
        ("patch", "clusterkopfpeerings.kopf.dev"),
        ("get", "clusteranalysistemplates.herdsman.dev"),
    ]:
        assert can_i(cluster, account, *grant), grant
    for refused in [
        ("list", "secrets", "-n", namespace),
        ("patch", "rollouts.herdsman.dev", "-n", namespace),  # the spec is the user's
        ("delete", "services", "-n", namespace),
        ("create", "deployments.apps", "-n", namespace),
        ("update", "replicasets.apps", "-n", namespace),
        ("get", "nodes"),
    ]:
        assert not can_i(cluster, account, *refused), refused

    # A user with the built-in edit role may steer rollouts through the aggregated rules.
    user = f"system:serviceaccount:{namespace}:default"
    cluster.kubectl("create", "rolebinding", "editor", "--clusterrole=edit",
                    f"--serviceaccount={namespace}:default", "-n", namespace)  # fmt: skip
    aggregated = ("patch", "rollouts.herdsman.dev", "--subresource=status", "-n", namespace)
    wait_until(
        lambda: can_i(cluster, user, *aggregated), timeout=20, what="the aggregated edit rules"
    )

    # Upgrade: watch only one namespace. The ClusterRole shrinks to cluster-scoped reads,
    # a Role appears there, and the peering moves into that namespace.
    cluster.helm(
        "upgrade", release, str(CHART), "-n", ns, "--reuse-values",
        "--set", f"watchNamespaces={{{namespace}}}", "--wait", "--timeout", "90s",
    )  # fmt: skip
    cluster.kubectl("get", "role", release, "-n", namespace)
    cluster.kubectl("get", "kopfpeering", release, "-n", namespace)
    gone = cluster.kubectl("get", "clusterkopfpeering", release, check=False)
    assert "NotFound" in gone
    assert can_i(cluster, account, "watch", "replicasets.apps", "-n", namespace)
    assert not can_i(cluster, account, "watch", "replicasets.apps", "-n", "default")
    assert not can_i(cluster, account, "watch", "replicasets.apps", "-A")
    args = json.loads(cluster.kubectl("get", "deployment", release, "-n", ns, "-o", "json"))
    assert f"--namespace={namespace}" in args["spec"]["template"]["spec"]["containers"][0]["args"]
    cluster.kubectl("rollout", "status", f"deployment/{release}", "-n", ns, "--timeout=90s")

    # Uninstall: every object goes, the CRDs stay (deleting them would delete every Rollout).
    cluster.helm("uninstall", release, "-n", ns, "--wait")
    for kind, name, where in [
        ("deployment", release, ns),
        ("role", release, namespace),
        ("kopfpeering", release, namespace),
    ]:
        assert "NotFound" in cluster.kubectl("get", kind, name, "-n", where, check=False)
    for kind in ("clusterrole", "clusterrolebinding"):
        assert "NotFound" in cluster.kubectl("get", kind, release, check=False)
    assert "rollouts.herdsman.dev" in cluster.kubectl("get", "crd", "-o", "name")

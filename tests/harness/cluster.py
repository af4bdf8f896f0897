"""The real control plane for e2e tests: reuse a running one, or start it and stop it after.

Under CI=true nothing here may skip: a missing binary or a cluster that will not start is a
test failure, so a green CI run always means the e2e tests really ran.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from kubernetes import client, config

from herdsman.cluster.kube import Rest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = ROOT / "tests" / "cluster" / "cluster.sh"
CHART = ROOT / "charts" / "herdsman"
BUILD_SH = ROOT / "tests" / "cluster" / "build.sh"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

T = TypeVar("T")


def unavailable(reason: str) -> None:
    """Skip outside CI, fail inside it."""
    if IN_CI:
        pytest.fail(f"e2e prerequisite missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Cluster:
    kubeconfig: Path
    bin_dir: Path
    rest: Rest
    started_here: bool

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout if result.returncode == 0 else result.stderr

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        """helm against this cluster (the binary build.sh builds beside kubectl)."""
        return helm(*args, kubeconfig=self.kubeconfig, check=check, timeout=timeout)


def helm(
    *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 300
) -> str:
    """Run helm; with `kubeconfig`, against that cluster. Returns stdout (stderr on failure).

    Helm notes on stderr that it follows the chart's crds/herdsman symlink; that line is noise.
    """
    command = [str(tool("helm")), *args]
    if kubeconfig is not None:
        command += ["--kubeconfig", str(kubeconfig)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout if result.returncode == 0 else result.stderr


def token_kubeconfig(
    cluster: Cluster, token: str, path: Path, *, server: str | None = None
) -> Path:
    """A kubeconfig for the cluster holding only a bearer token (none of the admin's
    certificates); `server` replaces the API server's URL (e.g. a proxy in front of it)."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    entry = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    config = {"server": server} if server else dict(entry["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": config}],
                "users": [{"name": "token", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "token"}}],
                "current-context": "c",
            }
        )
    )
    return path


def tool(name: str) -> Path:
    """A binary build.sh builds (helm, kubectl...); missing: skipped, or failed under CI=true."""
    path = _tools_dir() / name
    if not path.exists():
        unavailable(f"{name} is not in {path.parent}: run tests/cluster/build.sh")
    return path


@functools.cache
def _tools_dir() -> Path:
    return _bin_dir()


def _bin_dir() -> Path:
    try:
        out = subprocess.run(
            [str(BUILD_SH)], capture_output=True, text=True, timeout=3600, check=True
        )
    except (subprocess.CalledProcessError, OSError) as err:
        unavailable(f"control-plane binaries could not be built: {err}")
    return Path(out.stdout.strip().splitlines()[-1])


def _reachable(kubeconfig: Path, kubectl: Path) -> bool:
    if not kubeconfig.exists():
        return False
    result = subprocess.run(
        [
            str(kubectl),
            "--kubeconfig",
            str(kubeconfig),
            "--request-timeout=3s",
            "get",
            "--raw",
            "/readyz",
        ],
        capture_output=True,
    )
    return result.returncode == 0


def start() -> Cluster:
    bin_dir = _bin_dir()
    kubeconfig = Path(os.environ.get("KUBECONFIG") or ROOT / ".cluster" / "kubeconfig")
    started = False
    if not _reachable(kubeconfig, bin_dir / "kubectl"):
        env = {**os.environ, "CLUSTER": "kwok"}
        result = subprocess.run(
            [str(CLUSTER_SH), "up"], capture_output=True, text=True, env=env, timeout=300
        )
        if result.returncode != 0:
            unavailable(f"local control plane did not start: {result.stderr[-2000:]}")
        kubeconfig = ROOT / ".cluster" / "kubeconfig"
        started = True
    api = config.new_client_from_config(config_file=str(kubeconfig))
    cluster = Cluster(kubeconfig=kubeconfig, bin_dir=bin_dir, rest=Rest(api), started_here=started)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=herdsman",
        "--timeout=60s",
    )
    _wait_served(cluster)
    return cluster


def _wait_served(cluster: Cluster) -> None:
    """Established is not yet served: a CRD just created answers 429 "storage is
    (re)initializing" until its watch cache fills, which the operator would log as an error
    on its first watch. Wait until every herdsman kind lists."""
    names = cluster.kubectl(
        "get", "crd", "-l", "app.kubernetes.io/part-of=herdsman", "-o", "name"
    ).split()

    def served() -> bool:
        return all(
            subprocess.run(
                [
                    str(cluster.bin_dir / "kubectl"),
                    "--kubeconfig",
                    str(cluster.kubeconfig),
                    "get",
                    name.removeprefix("customresourcedefinition.apiextensions.k8s.io/"),
                    "-A",
                    "--request-timeout=5s",
                    "-o",
                    "name",
                ],
                capture_output=True,
                timeout=30,
            ).returncode
            == 0
            for name in names
        )

    wait_until(served, timeout=60, interval=0.3, what="herdsman CRDs served")


def stop(cluster: Cluster) -> None:
    if cluster.started_here:
        subprocess.run([str(CLUSTER_SH), "down"], capture_output=True, timeout=120)


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll `probe` until it returns something truthy; fail with `describe()` when it never does."""
    end = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < end:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    detail = describe() if describe else repr(last)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {detail}")


def api_client(cluster: Cluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))

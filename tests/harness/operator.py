"""The operator as a real process, its output captured for assertions, killable at any instant."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cluster import CHART, Cluster, token_kubeconfig, wait_until
from harness.local_http import free_port

# One transition line: "<time> <ns>/<name> rev=<r> step=<s> weight=<w>[ replica=<id>] <Reason>: <message>"
TRANSITION = re.compile(
    r"^(?P<time>\S+) (?P<rollout>\S+/\S+) rev=(?P<rev>\S+) step=(?P<step>\S+)"
    r" weight=(?P<weight>\d+)(?: replica=(?P<replica>\S+))? (?P<reason>\w+): (?P<message>.*)$"
)


@dataclass
class Transition:
    rollout: str
    revision: str
    step: str
    weight: int
    reason: str
    message: str
    time: str = ""
    replica: str | None = None


@dataclass
class OperatorProcess:
    cluster: Cluster
    namespaces: list[str]
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # False: no --standalone, so Kopf peering decides whether this process acts (HA tests).
    standalone: bool = True
    # The whole command line instead of `python -m herdsman run ...` (e.g. the chart's pod
    # command); `namespaces`, `standalone` and `extra_args` are then not added.
    command: list[str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> OperatorProcess:
        args = [sys.executable, "-m", "herdsman", "run"]
        if self.standalone:
            args.append("--standalone")
        for ns in self.namespaces:
            args += ["--namespace", ns]
        args += self.extra_args
        if self.command is not None:
            args = list(self.command)
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts + 1} ---\n".encode())
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.starts += 1
        wait_until(
            lambda: f"operator started #{self.starts}" in self._ready_marks(),
            timeout=30,
            what="the operator to start",
            describe=lambda: self.log()[-2000:],
        )
        return self

    def _ready_marks(self) -> str:
        text = self.log()
        count = text.count("herdsman operator started")
        return " ".join(f"operator started #{i + 1}" for i in range(count))

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye — the crash the design must survive."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def transitions(self, rollout: str | None = None) -> list[Transition]:
        found = []
        for line in self.log().splitlines():
            m = TRANSITION.match(line)
            if m and (rollout is None or m["rollout"].endswith("/" + rollout)):
                found.append(
                    Transition(
                        m["rollout"],
                        m["rev"],
                        m["step"],
                        int(m["weight"]),
                        m["reason"],
                        m["message"],
                        m["time"],
                        m["replica"],
                    )
                )
        return found

    def reasons(self, rollout: str | None = None) -> list[str]:
        return [t.reason for t in self.transitions(rollout)]

    def logged(self, rollout: str, *expected: str, timeout: float = 10.0) -> list[str]:
        """The rollout's reasons once each of `expected` is in the log (as often as listed).

        The operator writes a transition's line just after the status write that carries it
        succeeds, so a test that has just seen that status can read the log a few milliseconds
        before the line is there. A test that checks for a line it expects waits for it here;
        a line that never comes still fails the test, after `timeout`.
        """

        def out() -> list[str] | None:
            reasons = self.reasons(rollout)
            return reasons if all(reasons.count(r) >= expected.count(r) for r in expected) else None

        return wait_until(
            out,
            timeout=timeout,
            what=f"{', '.join(expected)} logged for {rollout}",
            describe=lambda: self.log()[-3000:],
        )

    def wait_for(
        self, reason: str, *, rollout: str | None = None, timeout: float = 30.0, count: int = 1
    ) -> Transition:
        def seen() -> Transition | None:
            hits = [t for t in self.transitions(rollout) if t.reason == reason]
            return hits[count - 1] if len(hits) >= count else None

        return wait_until(
            seen, timeout=timeout, what=f"transition {reason}", describe=lambda: self.log()[-3000:]
        )

    def errors(self) -> list[str]:
        return [
            line for line in self.log().splitlines() if "Traceback" in line or " ERROR " in line
        ]


class ChartReplicas:
    """The chart installed for one namespace, and its pods' command run here as processes.

    KWOK runs no containers, so the Deployment's pods do nothing; these processes stand in for
    them: the pod's own command and arguments, the chart's ServiceAccount token (TokenRequest),
    POD_ID as the Deployment sets it. Ports move apart (many processes, one host) and the log
    is plain, for `transitions()`.
    """

    def __init__(
        self, cluster: Cluster, namespace: str, tmp_path: Path, values: tuple[str, ...] = ()
    ) -> None:
        self.cluster, self.namespace, self.tmp_path = cluster, namespace, tmp_path
        suffix = secrets.token_hex(3)
        self.release, self.operator_ns = f"herdsman-{suffix}", f"herdsman-ha-{suffix}"
        more = [arg for value in values for arg in ("--set", value)]
        cluster.helm(
            "install", self.release, str(CHART), "-n", self.operator_ns, "--create-namespace",
            "--set", f"watchNamespaces={{{namespace}}}", *more, "--wait", "--timeout", "90s",
        )  # fmt: skip
        token = cluster.kubectl(
            "create", "token", self.release, "-n", self.operator_ns, "--duration=1h"
        ).strip()
        self.kubeconfig = token_kubeconfig(cluster, token, tmp_path / "sa.kubeconfig")
        deployment = json.loads(
            cluster.kubectl("get", "deployment", self.release, "-n", self.operator_ns, "-o", "json")
        )
        (self.container,) = deployment["spec"]["template"]["spec"]["containers"]
        self.processes: list[OperatorProcess] = []

    @property
    def peering_lifetime(self) -> float:
        """The keep-alive lifetime the chart passes (the bound on a takeover after a crash)."""
        for arg in self.container["args"]:
            if arg.startswith("--peering-lifetime="):
                return float(arg.split("=", 1)[1])
        return 60.0  # Kopf's default

    def command(self) -> list[str]:
        args = []
        for arg in self.container["args"]:
            if arg.startswith("--liveness="):
                arg = f"--liveness=http://127.0.0.1:{free_port()}/healthz"
            elif arg.startswith("--metrics-port="):
                arg = f"--metrics-port={free_port()}"
            elif arg.startswith("--log-format="):
                arg = "--log-format=plain"
            args.append(arg)
        return [*self.container["command"], *args]

    def start(self, name: str) -> OperatorProcess:
        process = OperatorProcess(
            cluster=self.cluster,
            namespaces=[self.namespace],
            log_path=self.tmp_path / f"{name}.log",
            command=self.command(),
            env={
                "KUBECONFIG": str(self.kubeconfig),
                "POD_ID": name,  # the Deployment sets it from metadata.name
                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            },
        ).start()
        self.processes.append(process)
        return process

    def leases(self) -> list[dict[str, Any]]:
        """The Leases in the operator's namespace (sharding: shard and member Leases)."""
        body = json.loads(
            self.cluster.kubectl("get", "leases", "-n", self.operator_ns, "-o", "json")
        )
        items: list[dict[str, Any]] = body.get("items") or []
        return items

    def peers(self) -> dict[str, Any]:
        body = json.loads(
            self.cluster.kubectl(
                "get", "kopfpeering", self.release, "-n", self.namespace, "-o", "json"
            )
        )
        status: dict[str, Any] = body.get("status") or {}
        return status

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        self.cluster.helm("uninstall", self.release, "-n", self.operator_ns, "--wait", check=False)
        self.cluster.kubectl(
            "delete", "namespace", self.operator_ns, "--ignore-not-found", "--wait=false"
        )


def settle_time() -> None:
    time.sleep(0.2)

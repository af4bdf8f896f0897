"""The operator as a real process, its output captured for assertions, killable at any instant."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.cluster import Cluster, wait_until

# One transition line: "<time> <ns>/<name> rev=<r> step=<s> weight=<w> <Reason>: <message>"
TRANSITION = re.compile(
    r"^\S+ (?P<rollout>\S+/\S+) rev=(?P<rev>\S+) step=(?P<step>\S+) weight=(?P<weight>\d+)"
    r" (?P<reason>\w+): (?P<message>.*)$"
)


@dataclass
class Transition:
    rollout: str
    revision: str
    step: str
    weight: int
    reason: str
    message: str


@dataclass
class OperatorProcess:
    cluster: Cluster
    namespaces: list[str]
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # False: no --standalone, so Kopf peering decides whether this process acts (HA tests).
    standalone: bool = True
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> OperatorProcess:
        args = [sys.executable, "-m", "herdsman", "run"]
        if self.standalone:
            args.append("--standalone")
        for ns in self.namespaces:
            args += ["--namespace", ns]
        args += self.extra_args
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
                    )
                )
        return found

    def reasons(self, rollout: str | None = None) -> list[str]:
        return [t.reason for t in self.transitions(rollout)]

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


def settle_time() -> None:
    time.sleep(0.2)

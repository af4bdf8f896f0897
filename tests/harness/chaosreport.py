"""What the chaos suite did, tallied across its tests and printed once at the end of the session.

Tests add to the one `REPORT`; tests/chaos/conftest.py prints it (pytest_terminal_summary). The
knobs are environment variables, with CI-sized defaults.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


def knob(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


# CI-sized defaults: >= 100 kills, >= 1,000 API faults, >= 1,000 manifests in about 10 minutes.
KILLS = int(knob("HERDSMAN_CHAOS_KILLS", 100))
MANIFESTS = int(knob("HERDSMAN_CHAOS_MANIFESTS", 1000))
FAULT_RATE = knob("HERDSMAN_CHAOS_FAULT_RATE", 0.38)
API_FAULTS = int(knob("HERDSMAN_CHAOS_API_FAULTS", 1000))
HA_KILLS = int(knob("HERDSMAN_CHAOS_HA_KILLS", 4))


@dataclass
class ChaosReport:
    kills: int = 0
    leader_kills: int = 0
    api_requests: int = 0
    api_faults: Counter[str] = field(default_factory=Counter)
    metric_faults: Counter[str] = field(default_factory=Counter)
    manifests: Counter[str] = field(default_factory=Counter)
    rollouts_completed: int = 0
    violations: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    def lines(self) -> list[str]:
        faults = sum(self.api_faults.values())
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.api_faults.items())) or "none"
        metric = ", ".join(f"{k} {v}" for k, v in sorted(self.metric_faults.items())) or "none"
        m = self.manifests
        return [
            f"operator kills (SIGKILL): {self.kills} (+ {self.leader_kills} leader kills, two replicas)",
            f"API requests through the proxy: {self.api_requests}; faults injected: {faults} ({kinds})",
            f"metric faults served: {sum(self.metric_faults.values())} ({metric})",
            f"manifests tried: {m['tried']}: accepted {m['accepted']} (InvalidSpec {m['invalid_spec']}),"
            f" refused {m['refused']} (same field named {m['same_field']}), created for real {m['created']}",
            f"rollouts completed under faults: {self.rollouts_completed}",
            f"invariant violations: {len(self.violations)}",
            *[f"  VIOLATION {v}" for v in self.violations[:30]],
            f"wall time: {time.monotonic() - self.started:.0f}s",
        ]


REPORT = ChaosReport()

"""Log formatting: one line per transition, readable with `kubectl logs -f` alone.

Plain (default):  2026-11-23T19:40:01.237Z shop/checkout rev=7 step=2/5 weight=20 StepStarted: step 2/5: setWeight 20
JSON (--log-format json): the same fields as keys, for log collectors.

With sharding (several replicas acting at once) each transition also names the replica that made
it (`replica=<pod>` after the weight): who acted on which Rollout when, from the logs alone.
Milliseconds, because replicas hand shards over within one second.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from herdsman.api.rollout import Rollout
from herdsman.engine.world import Decision, Transition

transitions = logging.getLogger("herdsman.transitions")

_FIELDS = ("rollout", "revision", "step", "weight", "replica", "reason")

# This replica's identity when several act at once (sharding); None: not named in the lines.
REPLICA: str | None = None


def _stamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = _stamp(record.created)
        if hasattr(record, "rollout"):
            f = record.__dict__
            by = f" replica={f['replica']}" if f.get("replica") else ""
            head = f"{f['rollout']} rev={f['revision']} step={f['step']} weight={f['weight']}{by} {f['reason']}"
            line = f"{stamp} {head}: {record.getMessage()}"
        else:
            line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _FIELDS:
            if hasattr(record, key) and (key != "replica" or getattr(record, key)):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(fmt: str = "plain", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Kopf narrates every handler call; our transitions are the story users want.
    for noisy in ("kopf", "aiohttp", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Except who leads: pausing and resuming under peering is worth a line in HA installs.
    logging.getLogger("kopf._core.engines.peering").setLevel(logging.INFO)


def announce(rollout: Rollout, decision: Decision, transition: Transition) -> None:
    """Exactly one line for one transition, with the rollout, revision, step and weight."""
    st = decision.status
    transitions.log(
        logging.WARNING if transition.warning else logging.INFO,
        transition.message,
        extra={
            "rollout": f"{rollout.metadata.namespace}/{rollout.metadata.name}",
            "revision": st.current_revision,
            "step": st.step or "-",
            "weight": st.canary_weight,
            "reason": transition.reason,
            "replica": REPLICA,
        },
    )

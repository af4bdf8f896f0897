"""A fake Prometheus whose answers go wrong in the ways real ones do, one way per address.

    with FaultyPrometheus() as prom:
        prom.address("nan")      # http://127.0.0.1:<port>/nan: its /api/v1/query answers NaN

Modes:
- `down`     nothing listens (a port that was free when asked),
- `slow`     answers a good value, but only after `slow_seconds` (past the operator's deadline),
- `garbage`  200 with a body that is not JSON,
- `nan`      a well-formed vector whose value is NaN,
- `empty`    a well-formed, empty vector (no data),
- `flapping` a good value and a failing one, alternately,
- `good`     always the good value (the control).

`counts` tells how many faulty answers each mode gave (`down` counts nothing: no one hears
the attempts), for the chaos summary.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from types import TracebackType
from typing import Any

from harness.local_http import LocalHttpServer, Reply, Request, free_port

MODES = ("slow", "garbage", "nan", "empty", "flapping", "good")
GOOD, BAD = 0.01, 0.9


def vector(value: str | None) -> dict[str, Any]:
    result = [] if value is None else [{"metric": {}, "value": [time.time(), value]}]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


class FaultyPrometheus:
    def __init__(self, slow_seconds: float = 15.0) -> None:
        self.slow_seconds = slow_seconds
        self.counts: Counter[str] = Counter()
        self._flips = 0
        self._lock = threading.Lock()
        self._down = free_port()
        routes = {}
        for mode in MODES:
            for api in ("query", "query_range"):
                routes[f"/{mode}/api/v1/{api}"] = self._handler(mode)
        self.server = LocalHttpServer(routes)

    def address(self, mode: str) -> str:
        if mode == "down":
            return f"http://127.0.0.1:{self._down}"
        return self.server.url(f"/{mode}")

    def _count(self, mode: str) -> None:
        with self._lock:
            self.counts[mode] += 1

    def _handler(self, mode: str) -> Any:
        def answer(_: Request) -> Reply:
            if mode == "good":
                return Reply(200, vector(str(GOOD)))
            self._count(mode)
            if mode == "slow":
                self.server.release.wait(self.slow_seconds)
                return Reply(200, vector(str(GOOD)))
            if mode == "garbage":
                return Reply(200, "<html><body>502 Bad Gateway</body></html>\x00\xff{")
            if mode == "nan":
                return Reply(200, vector("NaN"))
            if mode == "empty":
                return Reply(200, vector(None))
            with self._lock:
                self._flips += 1
                value = GOOD if self._flips % 2 else BAD
            return Reply(200, vector(str(value)))

        return answer

    def start(self) -> FaultyPrometheus:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FaultyPrometheus:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

"""Run the operator under tracemalloc; SIGUSR2 writes where its memory is to $MEMORY_PROFILE.

Used by bench_scale.py (MEMORY_PROFILE=path): the report groups live allocations by file and
by the operator-side call site that made them, which is how the per-rollout cost was found.
tracemalloc slows the operator down, so figures from such a run are not the benchmark's.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

FRAMES = 12


def report(path: Path) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    total = sum(s.size for s in snapshot.statistics("filename"))
    lines = [f"traced: {total / 2**20:.1f} MiB", "", "by file:"]
    for stat in snapshot.statistics("filename")[:30]:
        lines.append(
            f"  {stat.size / 2**20:8.2f} MiB  {stat.count:9d}  {stat.traceback[0].filename}"
        )
    lines += ["", "by call site (the innermost frame of this project or kopf):"]
    sites: dict[str, list[int]] = {}
    for stat in snapshot.statistics("traceback"):
        frames = [f for f in stat.traceback if "herdsman" in f.filename or "kopf" in f.filename]
        key = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "(elsewhere)"
        entry = sites.setdefault(key, [0, 0])
        entry[0] += stat.size
        entry[1] += stat.count
    for key, (size, count) in sorted(sites.items(), key=lambda kv: -kv[1][0])[:40]:
        lines.append(f"  {size / 2**20:8.2f} MiB  {count:9d}  {key}")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    path = Path(os.environ["MEMORY_PROFILE"])
    # Imported before tracing starts: traced imports take minutes, and the question is what
    # each rollout costs, not what the libraries cost (tests/unit/test_import_footprint.py).
    import herdsman.__main__
    import herdsman.handlers
    import herdsman.reconcile  # noqa: F401

    tracemalloc.start(FRAMES)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        report(path)

    signal.signal(signal.SIGUSR2, on_signal)
    sys.argv = ["herdsman", *sys.argv[1:]]
    runpy.run_module("herdsman", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

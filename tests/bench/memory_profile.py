"""Run the operator under tracemalloc; SIGUSR2 writes where its memory is to $MEMORY_PROFILE.

Used by bench_scale.py (MEMORY_PROFILE=path): the report groups live allocations by file and
by the operator-side call site that made them, which is how the per-rollout cost was found.
tracemalloc slows the operator down (tenfold at N=1,000), so figures from such a run are not
the benchmark's. MEMORY_TRACE=0 leaves it off: the report then holds only the allocators'
own accounts (CPython's arenas used and free, malloc's heap, resident memory by kind), at the
benchmark's speed.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys
import tempfile
import tracemalloc
from pathlib import Path
from types import FrameType

FRAMES = 12


def allocators() -> list[str]:
    """CPython's small-object arenas (blocks in use against free) and glibc's heap."""
    lines = ["", "CPython small-object allocator:"]
    with tempfile.TemporaryFile() as out:
        # _debugmallocstats writes to the C stderr: lend it a file for the call.
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    wanted = ("arenas allocated current", "highwater", "bytes in", "unused pools")
    lines += [f"  {line.strip()}" for line in text.splitlines() if any(w in line for w in wanted)]
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return lines
    fields = ["arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks"]
    fields += ["uordblks", "fordblks", "keepcost"]

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in fields]

    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    mib = 2**20
    lines += [
        "",
        "glibc malloc:",
        f"  heap {info.arena / mib:.1f} MiB: in use {info.uordblks / mib:.1f},"
        f" free {info.fordblks / mib:.1f}; mmapped {info.hblkhd / mib:.1f} MiB",
    ]
    return lines


def report(path: Path) -> None:
    if not tracemalloc.is_tracing():
        path.write_text("\n".join(["(tracemalloc off)", *allocators(), *resident()]) + "\n")
        return
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
    path.write_text("\n".join([*lines, *allocators(), *resident()]) + "\n")


def resident() -> list[str]:
    """Resident memory by kind: file-backed pages are the shared libraries' code, the
    anonymous ones the heaps (CPython's arenas and malloc's), where the live objects are."""
    lines: list[str] = []
    rollup = Path("/proc/self/smaps_rollup")
    if rollup.exists():
        lines += ["", "resident:"]
        lines += [
            f"  {line}"
            for line in rollup.read_text().splitlines()[1:]
            if "Rss" in line or "Anon" in line
        ]
    return lines


def main() -> None:
    path = Path(os.environ["MEMORY_PROFILE"])
    # Imported before tracing starts: traced imports take minutes, and the question is what
    # each rollout costs, not what the libraries cost (tests/unit/test_import_footprint.py).
    import herdsman.__main__
    import herdsman.handlers
    import herdsman.reconcile  # noqa: F401

    if os.environ.get("MEMORY_TRACE", "1") != "0":
        tracemalloc.start(FRAMES)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        report(path)

    signal.signal(signal.SIGUSR2, on_signal)
    sys.argv = ["herdsman", *sys.argv[1:]]
    runpy.run_module("herdsman", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

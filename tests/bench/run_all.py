"""`make bench`: run every tests/bench/bench_*.py and print its figures, one block per script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = 0
    # The scale benches have their own targets (make bench-scale, make bench-floor): minutes of
    # the whole machine at the sizes they are meant for, not seconds.
    own_target = {"bench_scale.py", "bench_floor.py"}
    for script in sorted(p for p in HERE.glob("bench_*.py") if p.name not in own_target):
        print(f"== {script.name}", flush=True)
        result = subprocess.run([sys.executable, str(script)], check=False)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

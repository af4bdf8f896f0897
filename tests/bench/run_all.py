"""`make bench`: run every tests/bench/bench_*.py and print its figures, one block per script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = 0
    # bench_scale.py has its own target (make bench-scale): minutes, not seconds.
    for script in sorted(p for p in HERE.glob("bench_*.py") if p.name != "bench_scale.py"):
        print(f"== {script.name}", flush=True)
        result = subprocess.run([sys.executable, str(script)], check=False)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the canary judge: 50 metrics x 1,000 points per group, classify all, then score.

    python tests/bench/bench_judge.py [--runs 30] [--metrics 50] [--points 1000]

Goal: one full analysis (every classify plus the score) in at most 50 ms. Prints plain-text
lines: the machine's versions, then median / p95 / min over the timed runs, after warm-up.

The metric mix is what a canary analysis really judges, so each code path is exercised: latency
(lognormal, long tail, outlier removal), error ratios (mostly 0), CPU (normal), request counts
(integers, ties), some NaN gaps; a third of the canaries regress, a third shift slightly.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy

try:
    from herdsman.analysis.judge import JudgeSpec, ScoringSpec, classify, score
except ImportError:  # run from a checkout without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "operator"))
    from herdsman.analysis.judge import JudgeSpec, ScoringSpec, classify, score

GOAL_MS = 50.0
Metric = tuple[str, np.ndarray, np.ndarray, JudgeSpec]


def workload(metrics: int, points: int, seed: int = 20261123) -> list[Metric]:
    rng = np.random.default_rng(seed)
    out: list[Metric] = []
    for i in range(metrics):
        kind = i % 4
        factor = (1.0, 1.03, 1.3)[i % 3]
        if kind == 0:
            base = rng.lognormal(3.0, 0.6, points)
            can = rng.lognormal(3.0, 0.6, points) * factor
            spec = JudgeSpec(direction="increase", allowed_increase=1.1, outliers="remove")
        elif kind == 1:
            base = np.where(rng.random(points) < 0.7, 0.0, rng.exponential(0.01, points))
            can = np.where(rng.random(points) < 0.7, 0.0, rng.exponential(0.01 * factor, points))
            spec = JudgeSpec(direction="increase", critical=i == 1, group="errors")
        elif kind == 2:
            base = rng.normal(50.0, 5.0, points)
            can = rng.normal(50.0 * factor, 5.0, points)
            spec = JudgeSpec(direction="either", nan_strategy="replace", group="saturation")
        else:
            base = rng.poisson(40, points).astype(float)
            can = rng.poisson(40 * factor, points).astype(float)
            spec = JudgeSpec(direction="decrease", allowed_decrease=0.9, group="traffic")
        gaps = rng.random(points) < 0.01
        base[gaps] = np.nan
        out.append((f"metric-{i}", base, can, spec))
    return out


def analysis(metrics: list[Metric], scoring: ScoringSpec) -> float | None:
    judged = [(classify(name, base, can, spec), spec) for name, base, can, spec in metrics]
    return score(judged, scoring).score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--metrics", type=int, default=50)
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args()

    metrics = workload(args.metrics, args.points)
    scoring = ScoringSpec.model_validate(
        {"groups": [{"name": "default", "weight": 50}, {"name": "errors", "weight": 30}]}
    )
    for _ in range(args.warmup):
        analysis(metrics, scoring)
    timings = []
    for _ in range(args.runs):
        start = time.perf_counter()
        result = analysis(metrics, scoring)
        timings.append((time.perf_counter() - start) * 1000.0)
    timings.sort()
    median = statistics.median(timings)
    p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]

    print(f"python {platform.python_version()} ({platform.python_implementation()})")
    print(f"numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"machine {platform.machine()}, {os.cpu_count()} CPU(s), load {_load()}")
    print(f"workload {args.metrics} metrics x {args.points} points per group, score {result}")
    print(f"runs {args.runs} after {args.warmup} warm-up")
    print(f"median {median:.1f} ms")
    print(f"p95 {p95:.1f} ms")
    print(f"min {timings[0]:.1f} ms")
    print(f"per metric (median) {median / args.metrics * 1000:.0f} us")
    print(f"goal <= {GOAL_MS:.0f} ms: {'met' if median <= GOAL_MS else 'MISSED'} (median)")
    return 0


def _load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    sys.exit(main())

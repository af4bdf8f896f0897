"""The operator's base memory: what `herdsman run` imports before its first rollout.

SciPy and NumPy (the judge) cost about 80 MB of RSS, boto3 about 25 MB, cel-cpp (CEL
conditions) about 12 MB and lark (Argo's expr conditions) about 4 MB; an operator that never
runs a judged measurement, a CloudWatch metric or an analysis condition must not pay for them
(issue 17's memory goals). A regression here is a new eager import somewhere on the operator's path. The other
half of the base memory is glibc's per-thread malloc arenas, capped at start.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

# What `herdsman run` imports (herdsman/__main__.py's run path), in one fresh interpreter.
OPERATOR_PATH = """
import sys
import herdsman.__main__
from herdsman import handlers, metrics
from herdsman.cluster import experiment_step
from herdsman.cluster.analysis import Analysis
from herdsman.cluster.apply import Applier
from herdsman.reconcile import Runtime
from herdsman.experiments import ExperimentRuntime
from herdsman.traffic import writer
from herdsman.notify.notifier import Notifier
from herdsman.sharding import Shards
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY})))
"""
HEAVY = {
    "numpy",
    "scipy",
    "boto3",
    "botocore",
    "plotly",
    "influxdb_client",
    "apprise",
    "cel_expr_python",
    "lark",
}


def loaded(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code.replace("{HEAVY}", repr(HEAVY))],
        capture_output=True,
        text=True,
        check=True,
    )
    return {m.split(".")[0] for m in out.stdout.split()}


def test_the_operator_starts_without_the_heavy_libraries() -> None:
    assert loaded(OPERATOR_PATH) == set()


def test_the_judge_loads_them_when_it_classifies() -> None:
    code = OPERATOR_PATH.replace(
        "print(",
        "from herdsman.analysis import judge\n"
        "judge.classify('m', [1.0] * 20, [1.0] * 20, judge.JudgeSpec())\nprint(",
        1,
    )
    assert {"numpy", "scipy"} <= loaded(code)


def test_conditions_load_their_languages_when_evaluated() -> None:
    code = OPERATOR_PATH.replace(
        "print(",
        "from herdsman.analysis.conditions import Observation, assess\n"
        "assert assess(Observation([1.0]), 'result[0] > 0.0', None, language='CEL').phase"
        " == 'Successful'\n"
        "assert assess(Observation([1.0]), 'all(result, {# > 0})', None, language='Argo').phase"
        " == 'Successful'\n"
        "print(",
        1,
    )
    assert {"cel_expr_python", "lark"} <= loaded(code)


def capped(env: dict[str, str]) -> str:
    code = "from herdsman.__main__ import limit_malloc_arenas; print(limit_malloc_arenas())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc arenas")
def test_the_operator_caps_malloc_arenas_unless_the_environment_does() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert capped(env) == "True"
    assert capped({**env, "MALLOC_ARENA_MAX": "4"}) == "False"

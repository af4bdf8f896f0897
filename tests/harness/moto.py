"""moto's server (PyPI `moto[server]`) on 127.0.0.1: a CloudWatch that speaks the real API.

Started with INITIAL_NO_AUTH_ACTION_COUNT so that, after the first few calls (which create an
IAM user and its keys), every request must carry a valid SigV4 signature from those keys: the
provider's credentials are really checked, not just accepted.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.cluster import unavailable
from harness.local_http import free_port

SETUP_CALLS = 3
"""IAM calls made without authentication before moto starts enforcing it."""


@dataclass(frozen=True)
class Moto:
    url: str
    access_key: str
    secret_key: str
    region: str = "eu-west-1"


def _binary() -> str | None:
    beside = Path(sys.executable).with_name("moto_server")
    return str(beside) if beside.exists() else shutil.which("moto_server")


@contextmanager
def moto_server() -> Iterator[Moto]:
    """A running moto server with one IAM user allowed to use CloudWatch."""
    binary = _binary()
    if binary is None:
        unavailable("moto_server not installed (pip install 'moto[server]', part of .[dev])")
        raise AssertionError("unreachable")
    import boto3

    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS)}
    process = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port, process)
        url = f"http://127.0.0.1:{port}"
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="analysis")
        iam.put_user_policy(
            UserName="analysis",
            PolicyName="cloudwatch",
            PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",'
            ' "Action": ["cloudwatch:*", "monitoring:*"], "Resource": "*"}]}',
        )
        key = iam.create_access_key(UserName="analysis")["AccessKey"]
        yield Moto(url, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not listen on {port} within {timeout:g}s")

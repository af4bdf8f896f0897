"""AWS access for the CloudWatch provider and Prometheus' SigV4 signing, through boto3.

Where the credentials come from, in order:

1. The Secret `aws` in the run's namespace: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and
   optionally AWS_SESSION_TOKEN, AWS_REGION and AWS_ENDPOINT_URL (a VPC endpoint, LocalStack).
2. Only when the operator runs with HERDSMAN_AWS_AMBIENT_CREDENTIALS=true: the operator's own
   identity through boto3's default chain (IRSA, EKS Pod Identity, instance profile, a shared
   config `profile`). Argo always uses that chain; Herdsman does not by default, so a template
   author cannot borrow the operator's AWS identity unless the cluster admin allows it.

`roleArn` is assumed (STS AssumeRole) on top of whichever credentials were found.

boto3 is an optional dependency (the `aws` extra, which the operator image installs): botocore
adds ~30 MB and pins python-dateutil below 3, which holds the Kubernetes client back a version.
boto3 is synchronous, so calls run on a small dedicated thread pool with socket timeouts from
the attempt's deadline and botocore's own retries off (the shared retry policy decides).
"""

from __future__ import annotations

import asyncio
import atexit
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import requests.auth

from herdsman.analysis.providers.base import ProviderContext
from herdsman.analysis.providers.http import secret_keys
from herdsman.cluster.budget import Deadline
from herdsman.cluster.retry import HttpStatusError

if TYPE_CHECKING:
    import boto3
    import botocore.config

T = TypeVar("T")

SECRET = "aws"
AMBIENT_ENV = "HERDSMAN_AWS_AMBIENT_CREDENTIALS"
WORKERS = 8
_EXECUTOR = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="herdsman-aws")
atexit.register(_EXECUTOR.shutdown, wait=False, cancel_futures=True)


class AwsUnavailable(RuntimeError):
    """boto3 is not installed."""


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - the dev and image installs have it
        raise AwsUnavailable(
            "this provider needs the AWS SDK: install herdsman with the `aws` extra"
        ) from exc
    return boto3


def ambient_allowed(environ: dict[str, str] | None = None) -> bool:
    value = (environ if environ is not None else os.environ).get(AMBIENT_ENV, "")
    return value.strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class AwsAccess:
    session: boto3.Session
    region: str | None
    endpoint_url: str | None


async def aws_access(
    context: ProviderContext,
    deadline: Deadline,
    *,
    region: str | None = None,
    profile: str | None = None,
    role_arn: str | None = None,
) -> AwsAccess:
    """A boto3 session with the credentials the module docstring describes."""
    boto3 = _boto3()
    try:
        keys = await secret_keys(
            context,
            SECRET,
            ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
            ["AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL"],
            deadline=deadline,
        )
    except LookupError as exc:
        if not ambient_allowed():
            raise LookupError(
                f"{exc}; the operator's own AWS identity is used only with {AMBIENT_ENV}=true"
            ) from exc
        session = boto3.Session(profile_name=profile, region_name=region)
        endpoint = None
    else:
        session = boto3.Session(
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=keys.get("AWS_SESSION_TOKEN"),
            region_name=region or keys.get("AWS_REGION"),
        )
        endpoint = keys.get("AWS_ENDPOINT_URL")
    if session.region_name is None:
        raise LookupError(
            f"no AWS region: set AWS_REGION in the Secret {context.namespace}/{SECRET}"
            " (or sigv4.region)"
        )
    if role_arn:
        session = await run_sync(deadline, lambda config: _assume(session, role_arn, endpoint))
    return AwsAccess(session=session, region=session.region_name, endpoint_url=endpoint)


def _assume(session: boto3.Session, role_arn: str, endpoint: str | None) -> boto3.Session:
    boto3 = _boto3()
    sts = session.client("sts", endpoint_url=endpoint)
    answer = sts.assume_role(RoleArn=role_arn, RoleSessionName="herdsman-analysis")
    creds = answer["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=session.region_name,
    )


def client_config(timeout: float) -> botocore.config.Config:
    """Socket timeouts from the attempt's deadline; retries left to the shared policy."""
    from botocore.config import Config

    seconds = max(0.05, timeout)
    return Config(
        connect_timeout=seconds,
        read_timeout=seconds,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )


async def run_sync(deadline: Deadline, call: Callable[[botocore.config.Config], T]) -> T:
    """`call(config)` on the AWS thread pool; botocore errors become the retry policy's shapes."""
    loop = asyncio.get_running_loop()
    config = client_config(deadline.remaining())

    def guarded() -> T:
        try:
            return call(config)
        except Exception as exc:
            raise translate(exc) from exc

    return await loop.run_in_executor(_EXECUTOR, guarded)


def translate(exc: Exception) -> Exception:
    """A botocore error as HttpStatusError / TimeoutError / ConnectionError / LookupError."""
    from botocore import exceptions as errors

    if isinstance(exc, errors.ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 400)
        error = exc.response.get("Error", {})
        headers = {k.lower(): v for k, v in (meta.get("HTTPHeaders") or {}).items()}
        message = f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
        return HttpStatusError(status, message, retry_after=headers.get("retry-after"))
    if isinstance(exc, errors.ReadTimeoutError | errors.ConnectTimeoutError):
        return TimeoutError(str(exc))
    if isinstance(exc, errors.EndpointConnectionError | errors.ConnectionClosedError):
        return ConnectionError(str(exc))
    if isinstance(exc, errors.NoCredentialsError | errors.PartialCredentialsError):
        return LookupError(f"AWS credentials: {exc}")
    return exc


class SigV4Auth(requests.auth.AuthBase):
    """A requests auth hook that signs every request with SigV4 (service `aps`: Amazon Managed
    Prometheus), so prometheus-api-client's requests are signed as they leave."""

    def __init__(self, access: AwsAccess, service: str = "aps") -> None:
        credentials = access.session.get_credentials()
        if credentials is None:
            raise LookupError("AWS credentials: none found to sign with")
        self.credentials = credentials.get_frozen_credentials()
        self.region = access.region or ""
        self.service = service

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        from botocore.auth import SigV4Auth as Signer
        from botocore.awsrequest import AWSRequest

        # requests encodes a space in the query as `+`, which SigV4 canonicalises as a literal
        # plus: send (and sign) %20 instead. A real `+` is already %2B, so nothing else changes.
        url = request.url or ""
        if "?" in url:
            path, _, query = url.partition("?")
            url = f"{path}?{query.replace('+', '%20')}"
            request.url = url
        body = request.body or b""
        unsigned = AWSRequest(method=request.method, url=url, data=body)
        content_type = request.headers.get("Content-Type")
        if content_type:
            unsigned.headers["Content-Type"] = content_type
        Signer(self.credentials, self.service, self.region).add_auth(unsigned)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-SHA256"):
            if name in unsigned.headers:
                request.headers[name] = unsigned.headers[name]
        return request


def sign_headers(
    access: AwsAccess,
    method: str,
    url: str,
    body: str,
    headers: dict[str, str],
    service: str = "aps",
) -> dict[str, str]:
    """`headers` plus the SigV4 signature of the request (for aiohttp callers)."""
    from botocore.auth import SigV4Auth as Signer
    from botocore.awsrequest import AWSRequest

    credentials = access.session.get_credentials()
    if credentials is None:
        raise LookupError("AWS credentials: none found to sign with")
    unsigned = AWSRequest(method=method, url=url, data=body.encode(), headers=dict(headers))
    Signer(credentials.get_frozen_credentials(), service, access.region or "").add_auth(unsigned)
    return {**headers, **{k: str(v) for k, v in unsigned.headers.items()}}

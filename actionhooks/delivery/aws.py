"""What the SQS and S3 transports share: a boto3 client made from the hook's own credentials, the
SSRF check of its endpoint, and botocore's errors translated into ours.

Credentials come from the hook only, never from the engine's environment, instance role or
~/.aws: an account must not be able to make the engine act with the operator's AWS identity.
botocore's own retries are off (one `send` = one attempt; the worker's policy retries).

The SSRF guard checks the endpoint's host (the hook's `endpoint_url`, else the AWS endpoint of the
region) before every attempt, unless HOOK_ALLOW_PRIVATE_TARGETS is true. botocore resolves and
connects by itself (urllib3), so the connect cannot be pinned to the vetted address as for HTTP:
a name that re-resolves between the check and the connect can slip through (the same gap as Kafka).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.exceptions as bex
from botocore.config import Config

from actionhooks.delivery.ssrf import vet_target
from actionhooks.errors import DeliveryError, PayloadError, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings

__all__ = ["AWS_ERRORS", "aws_client", "translate", "vet_endpoint"]

# Everything botocore raises for one call (ClientError: the service answered with an error).
AWS_ERRORS = (bex.BotoCoreError, bex.ClientError)

_UNREACHABLE = (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError,
                bex.ConnectionClosedError, bex.ProxyConnectionError, bex.SSLError, bex.HTTPClientError)
_THROTTLED = frozenset({"Throttling", "ThrottlingException", "RequestThrottled", "SlowDown",
                        "ServiceUnavailable", "InternalError", "RequestTimeout"})


def aws_client(service: str, config: Any, settings: Settings, **extra: Any) -> Any:
    """A boto3 client for `service` with the hook's region, endpoint and credentials only."""
    session = boto3.session.Session(
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
        region_name=config.region,
    )
    timeout = settings.HOOK_HTTP_TIMEOUT_SEC
    return session.client(
        service,
        endpoint_url=str(config.endpoint_url) if config.endpoint_url else None,
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1},
                      proxies={}, **extra),
    )


def vet_endpoint(client: Any, what: str, delivered: frozenset[int] = frozenset()) -> None:
    """Raise TargetForbidden when the client's endpoint host resolves to a non-public address."""
    parts = urlsplit(client.meta.endpoint_url)
    vet_target(what, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80), delivered)


def translate(exc: Exception, where: str, delivered: frozenset[int] = frozenset()) -> DeliveryError:
    """Our error for one failed AWS call."""
    if isinstance(exc, _UNREACHABLE):
        return TargetUnreachable(f"{where}: {exc}", delivered=delivered)
    if isinstance(exc, bex.ParamValidationError):
        return PayloadError(f"{where}: {exc}", delivered=delivered)
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"{where}: {code}: {error.get('Message', '')}".rstrip(": ")
        if code in _THROTTLED or (isinstance(status, int) and status >= 500):
            return TargetUnreachable(text, status_code=status, delivered=delivered)
        return TargetRejected(text, status_code=status, delivered=delivered)
    return TargetRejected(f"{where}: {type(exc).__name__}: {exc}", delivered=delivered)

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

from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.exceptions as bex
from botocore.config import Config

from actionhooks.delivery.base import SerialTransport
from actionhooks.delivery.config import S3Delivery, SqsDelivery
from actionhooks.delivery.errormap import Case, ErrorMap
from actionhooks.delivery.ssrf import vet_target
from actionhooks.errors import DeliveryError, PayloadError, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings

__all__ = ["AWS_ERRORS", "AwsTransport", "aws_client", "translate", "vet_endpoint"]

AwsConfigT = TypeVar("AwsConfigT", SqsDelivery, S3Delivery)

_THROTTLED = frozenset({"Throttling", "ThrottlingException", "RequestThrottled", "SlowDown",
                        "ServiceUnavailable", "InternalError", "RequestTimeout"})


class AwsTransport(SerialTransport[AwsConfigT, Any]):
    """A transport with one boto3 client per worker process, vetted by the SSRF guard before each attempt."""

    service: ClassVar[str]  # "sqs", "s3"
    what: ClassVar[str]  # how errors name the endpoint

    def client_options(self) -> dict[str, Any]:
        """Extra botocore Config options of this service."""
        return {}

    def _open_client(self) -> Any:
        return aws_client(self.service, self.config, self.settings, **self.client_options())

    def _shut(self, client: Any) -> None:
        client.close()

    def _vetted_client(self) -> Any:
        """This process's client (urllib3 pools are not fork-safe), its endpoint vetted for this attempt."""
        client = self._ready_client()
        if not self.settings.HOOK_ALLOW_PRIVATE_TARGETS:
            vet_endpoint(client, self.what)
        return client


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
    answer, status = "", None
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        answer = f"{error.get('Code', '')}: {error.get('Message', '')}".rstrip(": ")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return _ERRORS.error(exc, delivered=delivered, status_code=status, where=where, answer=answer)


def _code(exc: bex.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _server_side(exc: bex.ClientError) -> bool:
    """Throttled, or a 5xx: the service may take the same call later."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return _code(exc) in _THROTTLED or (isinstance(status, int) and status >= 500)


# botocore's exceptions → ours (ClientError: the service answered with an error).
_ERRORS = ErrorMap(
    Case((bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError, bex.ConnectionClosedError,
          bex.ProxyConnectionError, bex.SSLError, bex.HTTPClientError), TargetUnreachable, "{where}: {exc}"),
    Case(bex.ParamValidationError, PayloadError, "{where}: {exc}"),
    Case(bex.ClientError, TargetUnreachable, "{where}: {answer}", when=_server_side),
    Case(bex.ClientError, TargetRejected, "{where}: {answer}"),
    Case(bex.BotoCoreError, TargetRejected),
)
# Everything botocore raises for one call.
AWS_ERRORS = _ERRORS.caught

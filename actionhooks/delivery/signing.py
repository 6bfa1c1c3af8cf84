"""Standard Webhooks signatures (standardwebhooks.com): receivers verify them with any of its libraries.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the key is the base64 part of the
hook's `whsec_…` secret. The id is the batch id, stable across retries, so a receiver can dedupe.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac

__all__ = ["sign"]

_PREFIX = "whsec_"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,` + base64 of HMAC-SHA256 over id, timestamp and body."""
    key = _key(secret)
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


@functools.lru_cache(maxsize=1024)
def _key(secret: str) -> bytes:
    if not secret.startswith(_PREFIX):
        raise ValueError("signing_secret must start with 'whsec_' (Standard Webhooks secret)")
    encoded = secret.removeprefix(_PREFIX)
    try:
        # Unpadded secrets are accepted, as the reference libraries do.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"signing_secret is not valid base64 after 'whsec_': {exc}") from exc
    if not key:
        raise ValueError("signing_secret has an empty key after 'whsec_'")
    return key

"""Standard Webhooks signatures (standardwebhooks.com): receivers verify them with any of its libraries.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the key is the base64 part of the
hook's `whsec_…` secret. The id is the batch id, stable across retries, so a receiver can dedupe.
`signing_key` is the one reader of such a secret: the hook model checks a secret with it at save
(delivery/config.py), so a secret that saves is exactly a secret that signs.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac

__all__ = ["sign", "signing_key"]

_PREFIX = "whsec_"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,` + base64 of HMAC-SHA256 over id, timestamp and body."""
    key = _cached_key(secret)
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret; ValueError saying what is wrong with it.

    Unpadded base64 is accepted, as the reference libraries read it (`whsec_MTIzNDU` is `whsec_MTIzNDU=`).
    """
    if not secret.startswith(_PREFIX):
        raise ValueError("must start with 'whsec_' (Standard Webhooks secret)")
    encoded = secret.removeprefix(_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"must be 'whsec_' followed by base64 (Standard Webhooks secret): not valid base64 ({exc})"
                         ) from None
    if not key:
        raise ValueError("the key after 'whsec_' is empty (an empty key signs nothing)")
    return key


_cached_key = functools.lru_cache(maxsize=1024)(signing_key)  # a hook signs every batch with the same secret

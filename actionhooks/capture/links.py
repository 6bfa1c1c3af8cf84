"""Redirect targets that are never open: an allow-listed http(s) host, or a link signed with the source's secret.

A signature covers the target and every other parameter of the link (HMAC-SHA256 over their
canonical form), so neither the target nor, say, the campaign id can be changed without a 400.
Targets are parsed once, strictly: anything a browser might read differently from us (backslashes,
whitespace, control characters, user info, a missing host) is refused before the host is compared.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlencode, urlsplit

__all__ = ["UnsafeTarget", "check_target", "host_allowed", "sign_link", "signature_valid"]

MAX_TARGET = 2048
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_HOST = re.compile(r"^[a-z0-9.-]+$")


class UnsafeTarget(ValueError):
    """A redirect target we will not send a browser to (the message says why, shown on the 400 page)."""


def check_target(to: str) -> str:
    """The target's lower-case host when `to` is an absolute http(s) URL we can redirect to; else UnsafeTarget."""
    if not to:
        raise UnsafeTarget("the link has no target (to=)")
    if len(to) > MAX_TARGET:
        raise UnsafeTarget(f"the target is longer than {MAX_TARGET} characters")
    if _BAD_CHARS.search(to):
        raise UnsafeTarget("the target contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(to)
    except ValueError:  # an unbalanced IPv6 bracket
        raise UnsafeTarget("the target is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not to.lower().startswith(("http://", "https://")):
        raise UnsafeTarget("only http and https targets are followed")
    if "@" in parts.netloc:
        raise UnsafeTarget("targets with user info (user@host) are not followed")
    try:
        host = (parts.hostname or "").rstrip(".")
        _ = parts.port  # a malformed port raises ValueError
    except ValueError:
        raise UnsafeTarget("the target's host or port is malformed") from None
    if not _HOST.match(host) and not (parts.netloc.startswith("[") and ":" in host):
        raise UnsafeTarget("the target has no host, or one with characters a host name cannot have (use punycode)")
    return host


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """`host` equals a pattern, or is a subdomain of a `*.` pattern (label boundary: never a look-alike)."""
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def _canonical(items: Iterable[tuple[str, str]]) -> bytes:
    return urlencode(sorted(items)).encode()


def sign_link(secret: str, items: Iterable[tuple[str, str]]) -> str:
    """The `sig` of a link's parameters (target included): URL-safe base64 of HMAC-SHA256, unpadded."""
    digest = hmac.new(secret.encode(), _canonical(items), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def signature_valid(secret: str, items: Iterable[tuple[str, str]], sig: str) -> bool:
    return hmac.compare_digest(sign_link(secret, items).encode(), sig.encode("utf-8", "replace"))

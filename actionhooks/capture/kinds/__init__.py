"""The capture kinds: one module each, behind kinds/base.py's CaptureKind; this registry is all that lists them."""

from __future__ import annotations

from actionhooks.capture.kinds import pixel, redirect, site, webhook
from actionhooks.capture.kinds.base import CaptureKind

__all__ = ["ENDPOINT_KINDS", "KINDS"]

KINDS: dict[str, CaptureKind] = {kind.name: kind for kind in (pixel.KIND, redirect.KIND, webhook.KIND, site.KIND)}
# endpoint file name under /t/{key}/ -> the kind that answers it
ENDPOINT_KINDS: dict[str, CaptureKind] = {endpoint: kind for kind in KINDS.values() for endpoint in kind.endpoints}


def urls_of(kind: str, root: str) -> dict[str, str]:
    """The public URLs a source of `kind` serves, named as the API shows them (`urls` of a source)."""
    names = {"p.gif": "pixel", "r": "redirect", "wh": "webhook", "s.js": "script", "collect": "collect"}
    return {names[endpoint]: f"{root}/{endpoint}" for endpoint in KINDS[kind].endpoints}

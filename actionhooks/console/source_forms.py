"""The Sources page's form: a capture source (SourceSpec) as form fields and back, errors to their field.

The form builds the same JSON body a REST client sends (POST /sources, or the whole source as a merge
patch for PATCH /sources/{id}), so validation is SourceSpec's: nothing here decides what is valid.
Text that is not a number stays text (SourceSpec says why it is wrong); lists are one item per line
or comma. Secrets are write-only: an empty secret field sends "***", which the API reads as "keep the
stored one" (and answers, next to the field, that there is none when there is none).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_args

from actionhooks.capture.model import MASK, Auth, Source, default_event_types
from actionhooks.console.forms import body_path

__all__ = ["AUTH_TYPES", "KINDS", "body_of", "default_types_hint", "error_field", "form_of", "form_values"]

KINDS = {"site": "Site script", "pixel": "Pixel", "redirect": "Redirect links", "webhook": "Webhook"}
AUTH_TYPES = tuple(get_args(model.model_fields["type"].annotation)[0] for model in get_args(get_args(Auth)[0]))
CHECKBOXES = ("active", "anonymize_ip", "respect_do_not_track")
LISTS = ("event_types", "allowed_origins", "allowed_hosts")
_SPLIT = re.compile(r"[\s,]+")


def form_of(source: Source | None) -> dict[str, Any]:
    """The form of a stored source (secrets empty: write-only), or of a new one with the API's defaults."""
    if source is None:
        return {"name": "", "kind": "site", "active": True, "list_id": "", "event_types": "", "allowed_origins": "",
                "allowed_hosts": "", "cookie_name": "ah_vid", "anonymize_ip": True, "respect_do_not_track": True,
                "auth_type": "none", "auth_username": ""}
    spec = source.spec
    return {
        "name": spec.name, "kind": spec.kind, "active": spec.active,
        "list_id": "" if spec.list_id is None else str(spec.list_id),
        "event_types": ", ".join(spec.event_types),
        "allowed_origins": "\n".join(spec.allowed_origins),
        "allowed_hosts": "\n".join(spec.allowed_hosts),
        "cookie_name": spec.cookie_name, "anonymize_ip": spec.anonymize_ip,
        "respect_do_not_track": spec.respect_do_not_track,
        "auth_type": spec.auth.type, "auth_username": getattr(spec.auth, "username", ""),
    }


def form_values(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The submitted pairs as the form dict (unchecked checkboxes are absent from a form post)."""
    form: dict[str, Any] = dict(pairs)
    for flag in CHECKBOXES:
        form[flag] = form.get(flag) == "on"
    return form


def body_of(form: Mapping[str, Any], *, stored: Source | None) -> dict[str, Any]:
    """The JSON body of a submitted form: for POST /sources, or the whole source as PATCH's merge patch."""
    list_id = str(form.get("list_id", "")).strip()
    body: dict[str, Any] = {
        "name": str(form.get("name", "")),
        "kind": stored.spec.kind if stored else str(form.get("kind", "")),
        "active": bool(form.get("active")),
        "list_id": (int(list_id) if list_id.isdecimal() else list_id) if list_id else None,
        "cookie_name": str(form.get("cookie_name", "")).strip(),
        "anonymize_ip": bool(form.get("anonymize_ip")),
        "respect_do_not_track": bool(form.get("respect_do_not_track")),
    }
    for name in LISTS:
        body[name] = [item for item in _SPLIT.split(str(form.get(name, ""))) if item]
    auth_type = str(form.get("auth_type", "none"))
    stored_auth = stored.spec.auth.type if stored else None
    auth: dict[str, Any] = {"type": auth_type}
    if auth_type == "basic":
        auth["username"] = str(form.get("auth_username", ""))
        auth["password"] = _secret(form.get("auth_password"), keep=stored_auth == "basic")
    elif auth_type == "standard_webhooks":
        auth["secret"] = _secret(form.get("auth_secret"), keep=stored_auth == "standard_webhooks")
    body["auth"] = auth
    secret = str(form.get("secret") or "")
    body["secret"] = secret if secret else (MASK if stored else None)
    return body


def _secret(value: Any, *, keep: bool) -> str:
    """What a write-only field sends: the typed value, else "***" (keep the stored one) or "" (required)."""
    text = str(value or "")
    return text if text else (MASK if keep else "")


def error_field(loc: Iterable[str | int]) -> str:
    """The form field an API error location names ("" when none: shown above the form)."""
    parts = body_path(loc)
    if not parts:
        return ""
    head = parts[0]
    if head == "auth":
        rest = [p for p in parts[1:] if p not in AUTH_TYPES]
        return f"auth_{rest[0]}" if rest and rest[0] in ("username", "password", "secret") else "auth_type"
    if head in ("name", "kind", "active", "list_id", "cookie_name", "anonymize_ip", "respect_do_not_track",
                "secret", *LISTS):
        return head
    return ""


def default_types_hint() -> dict[str, str]:
    """The event types each kind produces when the field is left empty ("" for webhook: it must list them)."""
    return {kind: ", ".join(default_event_types(kind)) for kind in KINDS}

"""The hook editor's form: hook <-> flat form fields, and API error locations -> the field they name.

The form is a projection of the hook's API shape, nothing more: a submitted form becomes the same JSON
body a REST client would send, and HookSpec (through the hooks service) alone decides what is valid.
Delivery fields are derived from the delivery models themselves, so a field added to a transport's
model appears in the editor without a template change. Secrets are write-only: their inputs are
always empty, and an empty secret on a saved hook is sent as "***", which the service reads as
"keep the stored one" (exactly what an API client echoing a hook does).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, HttpUrl

from actionhooks.delivery.config import (
    MASK,
    BasicAuth,
    BearerAuth,
    HttpDelivery,
    KafkaDelivery,
    NoAuth,
    RabbitMQExchangeDelivery,
    RabbitMQQueueDelivery,
)
from actionhooks.events import EVENT_TYPES
from actionhooks.hooks.models import FILTER_KINDS, HookSpec

__all__ = [
    "ACTION_GROUPS",
    "AUTH_TYPES",
    "DELIVERY_TYPES",
    "FormField",
    "body_path",
    "delivery_fields",
    "error_field",
    "form_to_body",
    "hook_to_form",
]

DELIVERY_TYPES: dict[str, type[BaseModel]] = {
    "http": HttpDelivery,
    "rabbitmq_queue": RabbitMQQueueDelivery,
    "rabbitmq_exchange": RabbitMQExchangeDelivery,
    "kafka": KafkaDelivery,
}
DELIVERY_LABELS = {
    "http": "HTTP (JSON batches)",
    "rabbitmq_queue": "RabbitMQ queue",
    "rabbitmq_exchange": "RabbitMQ exchange",
    "kafka": "Kafka topic",
}
AUTH_TYPES: dict[str, type[BaseModel]] = {"none": NoAuth, "basic": BasicAuth, "bearer": BearerAuth}
# Actions grouped by kind for the editor (events.py's categories, in its order).
ACTION_GROUPS: dict[str, list[str]] = {}
for _code, _kind in EVENT_TYPES.items():
    ACTION_GROUPS.setdefault(_kind, []).append(_code)

_IDS = re.compile(r"[\s,;]+")
_HEADER_LINE = re.compile(r"^([^:]+):(.*)$")


@dataclass(frozen=True)
class FormField:
    """One input of a delivery type: `name` is the form name ("http.url"), `widget` how it is shown."""

    name: str
    label: str
    widget: Literal["text", "number", "url", "checkbox", "select", "secret", "headers"]
    choices: tuple[str, ...] = ()
    required: bool = False
    placeholder: str = ""
    help: str = ""
    default: Any = None  # what a new hook's form starts with (checkboxes and selects)

    @property
    def id(self) -> str:
        return "f-" + self.name.replace(".", "-").replace("_", "-")


_WORDS = {"url": "URL", "tls": "TLS", "sasl": "SASL", "sec": "(seconds)", "vhost": "Virtual host", "regex": "regex"}


def _label(name: str) -> str:
    """A field's visible label: "batch_timeout_sec" -> "Batch timeout (seconds)", "url" -> "URL"."""
    words = [_WORDS.get(word, word) for word in name.split("_")]
    text = " ".join(words)
    return text[0].upper() + text[1:]


def _literal_choices(annotation: Any) -> tuple[str, ...] | None:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:
        return tuple(str(a) for a in args)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for arg in args:
            found = _literal_choices(arg)
            if found:
                return found
    return None


def _fields_of(model: type[BaseModel], prefix: str) -> list[FormField]:
    out = []
    secrets = getattr(model, "SECRET_FIELDS", ())
    for name, info in model.model_fields.items():
        if name in ("type", "auth"):
            continue
        annotation = info.annotation
        label = _label(name)
        placeholder = "" if info.default is None or info.default_factory else str(info.default)
        help_text = info.description or ""
        choices = _literal_choices(annotation)
        widget: Any
        if name in secrets:
            widget, placeholder = "secret", ""
        elif choices:
            widget = "select"
        elif annotation is bool:
            widget = "checkbox"
        elif annotation in (int, float):
            widget = "number"
        elif annotation is HttpUrl:
            widget = "url"
        elif typing.get_origin(annotation) is dict:
            widget, help_text = "headers", "One header per line, as Name: value"
        else:
            widget = "text"
        if choices and info.default is None:
            choices = ("", *choices)
        out.append(
            FormField(
                name=f"{prefix}.{name}",
                label=label,
                widget=widget,
                choices=choices or (),
                required=info.is_required(),
                placeholder=placeholder,
                help=help_text,
                default=None if info.default_factory or widget in ("secret", "headers") else info.default,
            )
        )
    return out


def delivery_fields() -> dict[str, list[FormField]]:
    """The inputs of each delivery type (http also gets its auth inputs, under "http.auth.")."""
    out = {kind: _fields_of(model, kind) for kind, model in DELIVERY_TYPES.items()}
    for kind, model in AUTH_TYPES.items():
        if kind != "none":
            out[f"auth:{kind}"] = _fields_of(model, "http.auth")
    return out


FIELDS = delivery_fields()


def hook_to_form(spec: HookSpec | None) -> dict[str, Any]:
    """The editor's values for a stored hook (secrets left empty) or a new one (defaults)."""
    if spec is None:
        return {
            "name": "",
            "active": True,
            "database_id": "",
            "actions": [],
            "include_content": False,
            "profile_fields": "",
            "values": [("", "")],
            "delivery_type": "http",
            "http.auth.type": "none",
            **{f"filter_{kind}": "" for kind in FILTER_KINDS},
            **{f.name: f.default for fields in FIELDS.values() for f in fields if f.widget in ("checkbox", "select")},
        }
    data = spec.model_dump(mode="json")
    form: dict[str, Any] = {
        "name": data["name"],
        "active": data["active"],
        "database_id": "" if data["database_id"] is None else str(data["database_id"]),
        "actions": data["actions"],
        "include_content": data["include_content"],
        "profile_fields": ", ".join(data["custom_data"]["profile_fields"]),
        "values": list(data["custom_data"]["values"].items()) or [("", "")],
        "delivery_type": data["delivery"]["type"],
    }
    for kind in FILTER_KINDS:
        form[f"filter_{kind}"] = ", ".join(str(i) for i in data["filters"][kind])
    delivery = data["delivery"]
    kind = delivery["type"]
    for field in FIELDS[kind]:
        form[field.name] = _shown(field, delivery.get(field.name.split(".")[-1]))
    auth = delivery.get("auth") or {}
    form["http.auth.type"] = auth.get("type", "none")
    for field in FIELDS.get(f"auth:{form['http.auth.type']}", []):
        form[field.name] = _shown(field, auth.get(field.name.split(".")[-1]))
    return form


def _shown(field: FormField, value: Any) -> Any:
    if field.widget == "secret":
        return ""
    if field.widget == "checkbox":
        return bool(value)
    if field.widget == "headers":
        return "\n".join(f"{k}: {v}" for k, v in (value or {}).items())
    return "" if value is None else str(value)


class FormProblems(Exception):
    """Form input that cannot even be put into a JSON body (a header line without ':'), by field name."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


def _ids(text: str) -> list[Any]:
    return [int(part) if part.isdecimal() else part for part in _IDS.split(text.strip()) if part]


def form_values(fields: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The submitted pairs as the editor's form dict (lists where a name repeats)."""
    form: dict[str, Any] = {"actions": [], "values": []}
    keys = [v for k, v in fields if k == "value_key"]
    values = [v for k, v in fields if k == "value_value"]
    form["values"] = list(zip(keys, values, strict=False))
    for name, value in fields:
        if name == "actions":
            form["actions"].append(value)
        elif name not in ("value_key", "value_value"):
            form[name] = value
    checkboxes = (f.name for fields in FIELDS.values() for f in fields if f.widget == "checkbox")
    for flag in ("active", "include_content", *checkboxes):
        form[flag] = form.get(flag) == "on"
    return form


def form_to_body(form: Mapping[str, Any], *, stored: HookSpec | None) -> dict[str, Any]:
    """The JSON body (as for POST/PUT /hooks) of a submitted editor form.

    Raises FormProblems for text that has no JSON form; everything else is left to HookSpec."""
    problems: dict[str, str] = {}
    database = str(form.get("database_id", "")).strip()
    body: dict[str, Any] = {
        "name": form.get("name", ""),
        "active": bool(form.get("active")),
        "database_id": (int(database) if database.isdecimal() else database) if database else None,
        "actions": list(form.get("actions", [])),
        "filters": {
            **{kind: _ids(str(form.get(f"filter_{kind}", ""))) for kind in FILTER_KINDS},
            # The form has no editor for payload conditions yet: they stay as the API stored them.
            "match": stored.filters.model_dump(mode="json")["match"] if stored is not None else [],
        },
        "custom_data": {
            "profile_fields": [p for p in (s.strip() for s in str(form.get("profile_fields", "")).split(",")) if p],
            "values": {key.strip(): value for key, value in form.get("values", []) if key.strip() or value},
        },
        "include_content": bool(form.get("include_content")),
    }
    kind = str(form.get("delivery_type", "http"))
    stored_delivery = stored.delivery.model_dump(mode="json") if stored is not None else {}
    same_type = stored_delivery.get("type") == kind
    delivery: dict[str, Any] = {"type": kind}
    for field in FIELDS.get(kind, []):
        _put(delivery, field, form, stored_delivery if same_type else {}, problems)
    if kind == "http":
        auth_kind = str(form.get("http.auth.type", "none"))
        stored_auth = stored_delivery.get("auth") or {} if same_type else {}
        auth: dict[str, Any] = {"type": auth_kind}
        for field in FIELDS.get(f"auth:{auth_kind}", []):
            _put(auth, field, form, stored_auth if stored_auth.get("type") == auth_kind else {}, problems)
        delivery["auth"] = auth
    body["delivery"] = delivery
    if problems:
        raise FormProblems(problems)
    return body


def _put(
    target: dict[str, Any], field: FormField, form: Mapping[str, Any], stored: Mapping[str, Any],
    problems: dict[str, str],
) -> None:
    key = field.name.split(".")[-1]
    raw = form.get(field.name)
    if field.widget == "checkbox":
        target[key] = bool(raw)
        return
    text = "" if raw is None else str(raw)
    if field.widget == "secret":
        if text:
            target[key] = text
        elif stored.get(key) is not None:
            target[key] = MASK  # keep the stored secret
        return
    if field.widget == "headers":
        headers = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            match = _HEADER_LINE.match(line)
            if match is None:
                problems[field.name] = f"line {number} is not 'Name: value'"
                return
            headers[match.group(1).strip()] = match.group(2).strip()
        target[key] = headers
        return
    if text.strip() == "":
        return  # the model's default applies (or "Field required" names the field)
    target[key] = text.strip() if field.widget in ("number", "url") else text


def body_path(loc: Iterable[str | int]) -> list[str]:
    """An API error location as text, without its leading "body" (the forms name fields of the body)."""
    parts = [str(p) for p in loc]
    return parts[1:] if parts and parts[0] == "body" else parts


def error_field(loc: Iterable[str | int], kind: str) -> str:
    """The form field an API error location names ("" when it names none: shown above the form)."""
    parts = body_path(loc)
    if not parts:
        return ""
    head = parts[0]
    if head in ("name", "active", "database_id", "actions", "include_content"):
        return head
    if head == "filters" and len(parts) > 1:
        return f"filter_{parts[1]}"
    if head == "custom_data" and len(parts) > 1:
        if parts[1] == "values" and len(parts) > 2:
            return f"value:{parts[2]}"
        return "profile_fields" if parts[1] == "profile_fields" else ""
    if head == "delivery":
        rest = parts[1:]
        if rest and rest[0] == kind:
            rest = rest[1:]  # pydantic puts the discriminator's tag in the location
        if not rest:
            return "delivery_type"
        if rest[0] == "auth":
            rest = [r for r in rest[1:] if r not in AUTH_TYPES]
            return f"{kind}.auth.{rest[0]}" if rest else f"{kind}.auth.type"
        return f"{kind}.{rest[0]}"
    return ""

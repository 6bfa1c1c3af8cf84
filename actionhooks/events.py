"""The captured event: its type codes, its validation, and its date.

Kept below both `hooks` and `templating` so that neither imports the other: both need the event,
not each other. docs/wire-format.md describes the event for its users.

Validation is strict on the fields the engine acts on (ids are JSON integers, flags are JSON booleans:
a `"973"` campaign id would silently never match a filter) and tolerant elsewhere: unknown
`event_data` keys and unknown top-level fields (Altcraft adds fields over its versions) pass
through unchanged to every transport, bounded only by the request's size. `parse_events` returns
the dicts exactly as captured, never a `model_dump`, because the engine must deliver an event
byte-for-byte the way the platform sent it.

What the database cannot store is refused here, before anything is stored, never left to fail
in routing where it would stop the account's other events (issue 13): every string field we know
has a maximum length (MAX_LENGTHS, what its column holds where it is stored on its own), no
string anywhere holds a NUL (PostgreSQL text cannot), and no integer anywhere lies outside 64 bits
(orjson would silently turn it into a float, so the event would not be delivered as sent).
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model, field_validator
from pydantic_core import PydanticCustomError

from actionhooks.errors import EventsRejected, HookValidationError

__all__ = [
    "EVENT_TYPES",
    "ID_PATHS",
    "MAX_LENGTHS",
    "OPERATIONAL_EVENTS",
    "Content",
    "Event",
    "EventData",
    "event_timestamp",
    "example_event",
    "operational_event",
    "parse_event_date",
    "parse_events",
]

_DELIVERY, _TRACKING, _IMPORT, _SUBSCRIPTION = "delivery", "tracking", "import", "subscription"
_OPERATIONAL = "operational"

EVENT_TYPES: dict[str, str] = {
    # email (the platform's codes, docs/wire-format.md "Event types")
    "send": _DELIVERY, "reply": _DELIVERY, "uopen": _TRACKING, "open": _TRACKING, "uclick": _TRACKING,
    "click": _TRACKING, "confirm": _TRACKING, "confirmsub": _TRACKING, "unsub": _TRACKING,
    "complain": _DELIVERY, "sbounce": _DELIVERY, "hbounce": _DELIVERY, "suppress": _DELIVERY,
    "deliv": _DELIVERY, "undeliv": _DELIVERY, "read": _TRACKING, "glanced": _TRACKING, "skimmed": _TRACKING,
    # profile import
    "import_manual": _IMPORT, "import_file": _IMPORT, "import_api": _IMPORT,
    # SMS
    "send_sms": _DELIVERY, "click_sms": _TRACKING, "uclick_sms": _TRACKING, "deliv_sms": _DELIVERY,
    "undeliv_sms": _DELIVERY, "unsub_sms": _TRACKING,
    # push
    "uopen_push": _TRACKING, "open_push": _TRACKING, "send_push": _DELIVERY, "click_push": _TRACKING,
    "uclick_push": _TRACKING,
    # ours, where the platform documents no code
    "deliv_push": _DELIVERY, "undeliv_push": _DELIVERY, "pixel": _TRACKING, "sub_status": _SUBSCRIPTION,
    "page_view": _TRACKING, "site_event": _TRACKING, "identify": _TRACKING,  # the site script (README, Capture)
    # the engine about the account's own hooks (README, "Operational events")
    "hook_paused": _OPERATIONAL, "hook_resumed": _OPERATIONAL, "hook_stopped_gone": _OPERATIONAL,
    "batch_failed": _OPERATIONAL,
}
OPERATIONAL_EVENTS = frozenset(code for code, kind in EVENT_TYPES.items() if kind == _OPERATIONAL)

# The objects an event names by id, by kind, and where it names each. The one table of these kinds:
# hook filters are the event_data kinds (hooks/models.py, hooks/matching.py), the catalog and its
# template names are all of them (templating/parameters.py, the catalog API, the worker's look-ups).
ID_PATHS: dict[str, tuple[str, ...]] = {
    "databases": ("list_id",),
    "resources": ("event_data", "resource_id"),
    "campaigns": ("event_data", "campaign_id"),
    "messages": ("event_data", "message_id"),
    "segments": ("event_data", "segment_id"),
    "pixels": ("event_data", "pixel_id"),
}

_MAX_ID = 2**63 - 1  # ids land in BIGINT columns
Id = Annotated[int, Field(ge=0, le=_MAX_ID)]
_NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]+$"

# Longest value of each known string field, in characters (README "Guarantees and limits"). Fields
# stored in a column of their own get that column's size: profile_id (profiles.profile_id),
# send_message_id (contents.send_message_id), event_id (seen_events.event_id). Altcraft documents no
# lengths; its examples are 16-64 characters, so the others are generous bounds of what such a value
# can be (a URL, a user agent), there to keep one field from taking a whole request.
_TOP_LEVEL_LENGTHS = {
    "event_date": 64, "profile_id": 200, "_xxh": 64, "_md5": 64, "subscription_hash_id": 200, "event_id": 100,
}
# Every text key of event_data the engine or templates read: the EventData model is built from this table.
_EVENT_DATA_LENGTHS = {
    "send_message_id": 200, "launch_id": 200, "ip": 64, "country": 64, "city": 200, "postal_code": 64,
    "region": 200, "tz": 64, "user_agent": 8192, "os": 200, "browser": 200, "device": 200,
    "link_url": 32768, "extra_uid": 1024, "status": 64, "previous_status": 64,
}
MAX_LENGTHS: dict[str, int] = {**_TOP_LEVEL_LENGTHS, **_EVENT_DATA_LENGTHS}
# Integers orjson keeps as integers; beyond them it returns a float (a 20-digit id would arrive rounded).
_INT_RANGE = (-(2**63), 2**64 - 1)
# Every integer outside _INT_RANGE has at least 19 digits; as a JSON value it follows "[", ":" or ",".
# (Digits inside strings rarely match, and a match only costs a second, exact look: _big_int_paths.)
_LONG_DIGITS = re.compile(rb"[\[:,]\s*-?\d{19,}")


def _text(field: str) -> Any:
    return Annotated[str, Field(max_length=MAX_LENGTHS[field])]

# RFC 3339 date-time (section 5.6); "T"/"Z" may be lower case and any number of fraction digits is allowed.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_ORDINAL_OF_EPOCH = datetime.date(1970, 1, 1).toordinal()
# UTC instants a datetime can hold, so templates can always format the date (offsets may cross year 1/9999).
_MIN_SECONDS = (datetime.date.min.toordinal() - _ORDINAL_OF_EPOCH) * 86_400
_MAX_SECONDS = (datetime.date.max.toordinal() - _ORDINAL_OF_EPOCH + 1) * 86_400 - 1


def parse_event_date(value: str) -> tuple[int, int]:
    """(Unix seconds, nanoseconds 0..999,999,999) of an RFC 3339 string, or ValueError.

    Done by hand because `datetime` keeps only microseconds and Altcraft dates carry nine fraction
    digits, which `{{event_date_unixnano}}` must reproduce exactly. Digits beyond nine are truncated.
    """
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError("not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    try:
        days = datetime.date(year, month, day).toordinal() - _ORDINAL_OF_EPOCH
    except ValueError:
        raise ValueError("date out of range") from None
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("time out of range")
    offset = 0
    if match.group(9):
        off_h, off_m = int(match.group(10)), int(match.group(11))
        if off_h > 23 or off_m > 59:
            raise ValueError("UTC offset out of range")
        offset = (off_h * 3600 + off_m * 60) * (1 if match.group(9) == "+" else -1)
    fraction = (match.group(7) or "")[:9]
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        raise ValueError("date out of range once converted to UTC")
    return seconds, nanos


def operational_event(
    event_type: str, *, account_id: int, hook_id: int, hook_name: str, error: str | None, now: float,
    **details: Any,
) -> dict[str, Any]:
    """An event the engine captures about one of the account's hooks, shaped like any captured event
    (so templates, filters and every transport treat it alike); `event_data` carries the hook's id
    and name, the error that caused it (None for hook_resumed) and `details`."""
    if event_type not in OPERATIONAL_EVENTS:
        raise ValueError(f"{event_type!r} is not an operational event type ({', '.join(sorted(OPERATIONAL_EVENTS))})")
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    return {
        "event_type": event_type,
        "event_date": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "account_id": account_id,
        "is_test": False,
        "event_id": str(uuid.uuid4()),
        "event_data": {"hook_id": hook_id, "hook_name": hook_name, "error": error, **details},
    }


def example_event() -> dict[str, Any]:
    """A valid captured event, new each call: an email click of account 23 in database 111 (the
    example of POST /events in the API docs, and the base of the tests' events)."""
    return {
        "event_type": "click",
        "event_date": "2018-03-04T13:13:19.034315796Z",
        "account_id": 23,
        "list_id": 111,
        "profile_id": "abcdefgh12345678",
        "is_test": False,
        "event_data": {
            "campaign_id": 973,
            "message_id": 17,
            "segment_id": 0,
            "resource_id": 3,
            "send_message_id": "5a9bf01a17_3cd_11_6f_0_2.5a8c045fc1dde44cbf718f78",
        },
    }


def event_timestamp(event: Mapping[str, Any]) -> tuple[int, int]:
    """(Unix seconds, nanoseconds) of a validated event's `event_date`, offsets applied (UTC)."""
    return parse_event_date(event["event_date"])


def _optional(types: Mapping[str, Any]) -> dict[str, Any]:
    """Field definitions for create_model: each key of `types` optional (None when absent), of its type."""
    return {name: (kind | None, None) for name, kind in types.items()}


EventData = create_model(
    "EventData",
    __doc__="`event_data`: the keys the engine or templates read are typed; any other key is kept as sent.",
    __config__=ConfigDict(extra="allow", strict=True),
    **_optional(dict.fromkeys(("message_id", "campaign_id", "segment_id", "resource_id", "pixel_id", "list_id"), Id)),
    **_optional({name: _text(name) for name in _EVENT_DATA_LENGTHS}),
    **_optional({"lat": float, "lon": float}),
)

Content = create_model(
    "Content",
    __doc__="The message as sent: email {subject, html, text}, SMS {text}, push {title, body, url, image}.",
    __config__=ConfigDict(extra="forbid", strict=True),
    **_optional(dict.fromkeys(("subject", "html", "text", "title", "body", "url", "image"), str)),
)


class Event(BaseModel):
    """One captured event (docs/wire-format.md, "A captured event"); other fields pass as sent."""

    model_config = ConfigDict(extra="allow", strict=True)

    event_type: str
    event_date: _text("event_date")
    account_id: Id
    is_test: bool
    event_data: EventData
    profile_id: _text("profile_id") | None = None
    xxh: _text("_xxh") | None = Field(None, alias="_xxh")
    md5: _text("_md5") | None = Field(None, alias="_md5")
    list_id: Id | None = None
    sends_trying_num: Annotated[int, Field(ge=0)] | None = None
    is_static: bool | None = None
    subscription_hash_id: _text("subscription_hash_id") | None = None
    subscription: list[dict[str, Any]] | None = None
    custom_data: dict[str, Any] | None = None
    event_id: Annotated[
        str, Field(min_length=1, max_length=MAX_LENGTHS["event_id"], pattern=_NO_CONTROL_CHARS)
    ] | None = None
    content: Content | None = None

    @field_validator("event_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in EVENT_TYPES:
            raise PydanticCustomError(
                "event_type", "unknown event type {value}", {"value": repr(value)}
            )
        return value

    @field_validator("event_date")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        try:
            parse_event_date(value)
        except ValueError as exc:
            raise PydanticCustomError(
                "rfc3339",
                "must be an RFC 3339 date-time such as 2018-03-04T13:13:19.034315796Z ({reason})",
                {"reason": str(exc)},
            ) from None
        return value  # the original string: the engine delivers the event as captured


_EVENTS = TypeAdapter(list[Event])


def parse_events(body: bytes, *, max_events: int, assign_ids: bool = True) -> list[dict[str, Any]]:
    """Parse and validate a POST /events body: a JSON array of events or one event object.

    Returns the events exactly as captured, each given an `event_id` (UUIDv4) when it had none
    (unless `assign_ids` is false: the API first notes which ids the platform supplied, since only
    those can be repeats worth a dedup look-up).
    Raises HookValidationError naming every problem of every event, loc = (index, field, ...);
    a single object is index 0 (EventsRejected, with the reasons /metrics counts, once the body
    parsed). Nothing is returned unless every event is valid.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HookValidationError([(("body",), f"invalid JSON: {exc}")]) from None
    if isinstance(data, dict):
        events: list[Any] = [data]
    elif isinstance(data, list):
        events = data
    else:
        raise HookValidationError([(("body",), "must be a JSON array of events or one event object")])
    if len(events) > max_events:
        raise HookValidationError([(("body",), f"too many events: {len(events)} > {max_events} per request")])
    errors: list[tuple[tuple[str | int, ...], str, str]] = []
    try:
        _EVENTS.validate_python(events)
    except ValidationError as exc:
        errors.extend((tuple(err["loc"]), err["msg"], _reason(err["type"])) for err in exc.errors())
    if b"\\u0000" in body:  # the only way JSON can carry a NUL; rare, so the walk is only done then
        nul = "must not contain a NUL character (\\u0000)"
        errors.extend((loc, nul, "nul_character") for loc in _nul_paths(events))
    if _LONG_DIGITS.search(body):
        errors.extend(
            (loc, f"integer outside 64 bits ({_INT_RANGE[0]}..{_INT_RANGE[1]})", "integer_range")
            for loc in _big_int_paths(body)
        )
    if errors:
        raise EventsRejected([(loc, msg) for loc, msg, _ in errors], {reason for _, _, reason in errors})
    if assign_ids:
        for event in events:
            if event.get("event_id") is None:
                event["event_id"] = str(uuid.uuid4())
    return events


def _reason(pydantic_type: str) -> str:
    return "too_long" if pydantic_type == "string_too_long" else "invalid"


def _paths(root: Any, bad: Any) -> list[tuple[str | int, ...]]:
    """Where in `root` (lists and dicts, any depth, iteratively) a key or value satisfies `bad`; index first."""
    found: list[tuple[str | int, ...]] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), root)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if bad(key):
                    found.append((*path, key))
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, i), item) for i, item in enumerate(value))
        elif bad(value):
            found.append(path)
    return sorted(found, key=lambda loc: tuple(map(str, loc)))


def _nul_paths(events: list[Any]) -> list[tuple[str | int, ...]]:
    return _paths(events, lambda v: isinstance(v, str) and "\x00" in v)


class _OutOfRange(int):
    """An integer literal orjson would have turned into a float."""


def _big_int_paths(body: bytes) -> list[tuple[str | int, ...]]:
    """Where the body holds integer literals outside _INT_RANGE (read again by the standard parser, which
    shows each literal; only done when the body has a run of 19 digits somewhere)."""
    low, high = _INT_RANGE

    def parse_int(text: str) -> int:
        value = int(text)
        return value if low <= value <= high else _OutOfRange(value)

    try:
        data = json.loads(body, parse_int=parse_int)
    except ValueError:  # orjson read it; the standard parser may not (e.g. nesting): nothing more to say
        return []
    events = [data] if isinstance(data, dict) else data
    return _paths(events, lambda v: isinstance(v, _OutOfRange))

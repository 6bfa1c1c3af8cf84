from __future__ import annotations

import copy
import uuid
from typing import Any

import orjson
import pytest

from actionhooks.errors import EventsRejected, HookValidationError
from actionhooks.events import (
    EVENT_TYPES,
    MAX_LENGTHS,
    Event,
    EventData,
    event_timestamp,
    example_event,
    operational_event,
    parse_event_date,
    parse_events,
)
from actionhooks.storage import tables

# The platform's documented email click (docs/wire-format.md, "Example")
CLICK: dict[str, Any] = {
    "event_type": "click",
    "event_date": "2018-03-04T13:13:19.034315796Z",
    "list_id": 111,
    "_xxh": "ad1850e0d1d9481e",
    "_md5": "145bb30f7ddf1184cb560bc4b7705646",
    "is_test": False,
    "event_data": {
        "browser": "Firefox", "campaign_id": 973, "city": "", "country": "", "device": "web",
        "ip": "10.9.0.14", "lat": 0, "launch_id": "00000017000003cd5a9bf01a",
        "link_url": "http://www.ford.com", "lon": 0,
        "message_id": 17, "os": "Linux x86_64", "postal_code": "", "region": "", "segment_id": 0,
        "send_message_id": "5a9bf01a17_3cd_11_6f_0_2.5a8c045fc1dde44cbf718f78", "tz": "",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:59.0) Gecko/20100101 Firefox/59.0",
    },
    "custom_data": {"email": "alice@example.org"},
    "account_id": 23,
}


def body(value: Any) -> bytes:
    return orjson.dumps(value)


def errors_of(value: Any, max_events: int = 100) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(HookValidationError) as info:
        parse_events(body(value) if not isinstance(value, bytes) else value, max_events=max_events)
    return info.value.errors


def locs(value: Any) -> set[tuple[str | int, ...]]:
    return {loc for loc, _ in errors_of(value)}


def test_the_event_types_are_the_32_altcraft_codes_plus_ours() -> None:
    assert len(EVENT_TYPES) == 43
    operational = {"hook_paused", "hook_resumed", "hook_stopped_gone", "batch_failed"}  # README, Operational events
    assert {EVENT_TYPES[c] for c in operational} == {"operational"}
    assert {"deliv_push", "undeliv_push", "pixel", "sub_status"} <= EVENT_TYPES.keys()
    assert {EVENT_TYPES[c] for c in ("page_view", "site_event", "identify")} == {"tracking"}  # README, Capture
    assert EVENT_TYPES["click"] == "tracking"
    assert EVENT_TYPES["deliv"] == "delivery"
    assert EVENT_TYPES["import_api"] == "import"
    assert EVENT_TYPES["sub_status"] == "subscription"
    assert EVENT_TYPES["pixel"] == "tracking"
    assert set(EVENT_TYPES.values()) == {"delivery", "tracking", "import", "subscription", "operational"}


def test_the_documented_example_is_accepted_and_kept_exactly_as_captured() -> None:
    events = parse_events(body(CLICK), max_events=10)
    assert len(events) == 1
    event = events[0]
    assert list(event) == [*CLICK, "event_id"]  # key order too
    assert {k: v for k, v in event.items() if k != "event_id"} == CLICK
    assert event["event_data"]["lat"] == 0
    assert type(event["event_data"]["lat"]) is int  # not coerced to 0.0


def test_unknown_event_data_keys_and_unusual_values_pass_through_untouched() -> None:
    event = copy.deepcopy(CLICK)
    event["event_data"]["promo_code"] = {"code": "X1", "nested": [1, 2.5, None]}
    event["subscription"] = [{"resource_id": 123, "channel": "email", "ccsub": {"k": "v"}}]
    event["content"] = {"subject": "Hi", "html": "<p>Hi</p>", "text": "Hi"}
    (parsed,) = parse_events(body(event), max_events=1)
    assert parsed["event_data"]["promo_code"] == {"code": "X1", "nested": [1, 2.5, None]}
    assert parsed["subscription"] == event["subscription"]
    assert parsed["content"] == event["content"]


def test_an_array_is_accepted_and_every_event_gets_its_own_event_id() -> None:
    events = parse_events(body([CLICK, CLICK, CLICK]), max_events=3)
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == 3
    for ident in ids:
        assert uuid.UUID(ident).version == 4


def test_an_event_id_sent_by_the_platform_is_kept() -> None:
    events = parse_events(body([{**CLICK, "event_id": "evt-1"}, {**CLICK, "event_id": None}]), max_events=5)
    assert events[0]["event_id"] == "evt-1"
    assert uuid.UUID(events[1]["event_id"]).version == 4


def test_an_empty_array_is_no_events() -> None:
    assert parse_events(b"[]", max_events=5) == []


@pytest.mark.parametrize("field", ["event_type", "event_date", "account_id", "is_test", "event_data"])
def test_each_required_field_is_named_when_missing(field: str) -> None:
    event = {k: v for k, v in CLICK.items() if k != field}
    assert errors_of(event) == [((0, field), "Field required")]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_type", "clicked"),
        ("event_type", 5),
        ("event_date", "2018-03-04 13:13:19Z"),
        ("event_date", "2018-02-30T00:00:00Z"),
        ("event_date", "2018-03-04T24:00:00Z"),
        ("event_date", "2018-03-04T13:13:19"),
        ("event_date", "2018-03-04T13:13:19+25:00"),
        ("event_date", 1520169199),
        ("account_id", "23"),
        ("account_id", 23.0),
        ("account_id", True),
        ("account_id", -1),
        ("is_test", "false"),
        ("is_test", 0),
        ("event_data", []),
        ("list_id", "111"),
        ("profile_id", 5),
        ("_xxh", 5),
        ("_md5", ["x"]),
        ("sends_trying_num", -1),
        ("is_static", "no"),
        ("subscription", {"resource_id": 1}),
        ("subscription", [1]),
        ("custom_data", "email"),
        ("event_id", ""),
        ("event_id", "x" * 101),
        ("event_id", "bad\nid"),
        ("event_id", 7),
        ("content", "hello"),
        ("profile_id", "p" * 201),
        ("_xxh", "x" * 65),
        ("subscription_hash_id", "h" * 201),
    ],
)
def test_a_bad_top_level_field_is_rejected_by_name(field: str, value: Any) -> None:
    assert {loc[:2] for loc in locs({**CLICK, field: value})} == {(0, field)}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("campaign_id", "973"),
        ("campaign_id", True),
        ("message_id", 1.5),
        ("segment_id", -3),
        ("resource_id", "3"),
        ("pixel_id", [1]),
        ("list_id", "1"),
        ("send_message_id", 12),
        ("send_message_id", "s" * 201),
        ("link_url", "u" * 32769),
        ("lat", "55.2"),
    ],
)
def test_a_bad_known_event_data_field_is_rejected_by_path(field: str, value: Any) -> None:
    event = {**CLICK, "event_data": {**CLICK["event_data"], field: value}}
    assert locs(event) == {(0, "event_data", field)}


def test_content_accepts_only_the_documented_string_fields() -> None:
    assert locs({**CLICK, "content": {"subject": "s", "attachments": []}}) == {(0, "content", "attachments")}
    assert locs({**CLICK, "content": {"title": 5}}) == {(0, "content", "title")}
    push_content = {"title": "t", "body": "b", "url": "u", "image": "i"}
    (push,) = parse_events(body({**CLICK, "content": push_content}), max_events=1)
    assert push["content"]["image"] == "i"


def test_every_bad_event_of_a_request_is_reported_with_its_index() -> None:
    good = CLICK
    events = [good, {**good, "account_id": "x"}, good, {**good, "event_type": "nope", "is_test": None}, 7]
    assert locs(events) == {(1, "account_id"), (3, "event_type"), (3, "is_test"), (4,)}


def test_the_error_message_says_what_is_wrong() -> None:
    [(loc, msg)] = errors_of({**CLICK, "event_type": "clicked"})
    assert "clicked" in msg
    [(loc, msg)] = errors_of({**CLICK, "event_date": "yesterday"})
    assert loc == (0, "event_date")
    assert "RFC 3339" in msg


def test_too_many_events_is_rejected_as_a_whole() -> None:
    assert errors_of([CLICK] * 4, max_events=3) == [(("body",), "too many events: 4 > 3 per request")]
    assert len(parse_events(body([CLICK] * 3), max_events=3)) == 3


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,", b"nul", b"\xff"])
def test_a_body_that_is_not_json_is_rejected(raw: bytes) -> None:
    [(loc, msg)] = errors_of(raw)
    assert loc == ("body",)
    assert msg.startswith("invalid JSON")


@pytest.mark.parametrize("value", ["click", 5, None, True])
def test_a_body_that_is_neither_an_array_nor_an_object_is_rejected(value: Any) -> None:
    assert errors_of(value) == [(("body",), "must be a JSON array of events or one event object")]


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("2018-03-04T13:13:19.034315796Z", (1520169199, 34315796)),
        ("2023-03-17T15:07:00Z", (1679065620, 0)),
        ("2023-03-17T15:07:00.12Z", (1679065620, 120000000)),
        ("2023-03-17T18:07:00.5+03:00", (1679065620, 500000000)),
        ("2023-03-17T10:37:00-04:30", (1679065620, 0)),
        ("2023-03-17t15:07:00z", (1679065620, 0)),
        ("1969-12-31T23:59:59.999999999Z", (-1, 999999999)),
        ("2023-03-17T15:07:00.1234567891234Z", (1679065620, 123456789)),
    ],
)
def test_event_dates_keep_nanosecond_precision_in_utc(date: str, expected: tuple[int, int]) -> None:
    assert parse_event_date(date) == expected
    assert event_timestamp({"event_date": date}) == expected


def test_a_date_that_leaves_the_calendar_once_in_utc_is_rejected() -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_event_date("0001-01-01T00:00:00+01:00")
    assert locs({**CLICK, "event_date": "9999-12-31T23:59:59-01:00"}) == {(0, "event_date")}


# Tolerant reader, bounded input (issue 13 points 1a and 7)


def test_an_unknown_top_level_field_is_kept_exactly_as_sent() -> None:
    newer = {**CLICK, "field_added_by_a_newer_platform": {"nested": [1, "two", None], "n": 2**63}}
    (parsed,) = parse_events(body(newer), max_events=1, assign_ids=False)
    assert parsed == newer


def test_every_known_string_field_has_a_documented_maximum_and_the_maximum_itself_is_accepted() -> None:
    for model in (Event, EventData):
        for name, prop in model.model_json_schema(by_alias=True)["properties"].items():
            strings = [p for p in prop.get("anyOf", [prop]) if p.get("type") == "string"]
            if strings and name not in ("event_type", "content"):
                assert strings[0].get("maxLength") == MAX_LENGTHS[name], name
    at_limit = {**CLICK, "profile_id": "p" * MAX_LENGTHS["profile_id"],
                "event_data": {**CLICK["event_data"], "send_message_id": "s" * MAX_LENGTHS["send_message_id"]}}
    assert parse_events(body(at_limit), max_events=1)[0]["profile_id"] == at_limit["profile_id"]


def test_the_lengths_of_stored_ids_are_what_their_columns_hold() -> None:
    assert MAX_LENGTHS["profile_id"] == tables.Profile.__table__.c.profile_id.type.length
    assert MAX_LENGTHS["send_message_id"] == tables.Content.__table__.c.send_message_id.type.length
    assert MAX_LENGTHS["event_id"] == tables.SeenEvent.__table__.c.event_id.type.length


@pytest.mark.parametrize(
    ("event", "loc"),
    [
        ({**CLICK, "profile_id": "a\x00b"}, (0, "profile_id")),
        (
            {**CLICK, "event_data": {**CLICK["event_data"], "send_message_id": "s\x00"}},
            (0, "event_data", "send_message_id"),
        ),
        ({**CLICK, "custom_data": {"email": ["ok", "n\x00"]}}, (0, "custom_data", "email", 1)),
        ({**CLICK, "newer_field": {"k\x00": 1}}, (0, "newer_field", "k\x00")),
    ],
)
def test_a_nul_character_anywhere_is_refused_naming_where(event: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(EventsRejected) as info:
        parse_events(body(event), max_events=1)
    assert [e[0] for e in info.value.errors] == [loc]
    assert info.value.reasons == {"nul_character"}


def test_an_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    event = {**CLICK, "profile_id": "\\u0000"}  # backslash, then the six characters u0000
    assert parse_events(body(event), max_events=1)[0]["profile_id"] == "\\u0000"


@pytest.mark.parametrize("literal", [b"18446744073709551616", b"-9223372036854775809", b"1" + b"0" * 40])
def test_an_integer_orjson_would_turn_into_a_float_is_refused_naming_where(literal: bytes) -> None:
    raw = body([CLICK, {**CLICK, "newer_field": {"id": 1}}]).replace(b'"id":1', b'"id":' + literal)
    with pytest.raises(EventsRejected) as info:
        parse_events(raw, max_events=2)
    assert [e[0] for e in info.value.errors] == [(1, "newer_field", "id")]
    assert info.value.reasons == {"integer_range"}


def test_the_edges_of_64_bits_and_long_digit_strings_are_accepted() -> None:
    raw = body({**CLICK, "newer_field": [2**64 - 1, -(2**63), "123456789012345678901234567890"]})
    (parsed,) = parse_events(raw, max_events=1)
    assert parsed["newer_field"] == [2**64 - 1, -(2**63), "123456789012345678901234567890"]


def test_the_api_docs_example_event_is_a_valid_event_delivered_as_it_is() -> None:
    (parsed,) = parse_events(body(example_event()), max_events=1, assign_ids=False)

    assert parsed == example_event()


def test_an_operational_event_of_a_type_that_is_not_operational_is_refused_even_under_python_o() -> None:
    with pytest.raises(ValueError, match="'click' is not an operational event type"):
        operational_event("click", account_id=23, hook_id=1, hook_name="h", error=None, now=0.0)

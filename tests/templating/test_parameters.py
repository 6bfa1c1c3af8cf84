from __future__ import annotations

import uuid
from typing import Any

import pytest

from actionhooks.templating import PARAMETERS, CatalogEntry, DictCatalog, compile_values
from actionhooks.templating import parameters as parameters_module

DATES = ["event_date", "event_date_ymd", "event_date_rfc3339", "event_date_unix", "event_date_unixnano"]


def plain(name: str) -> str:
    return "{{" + name + "}}"


def render(event: dict[str, Any], catalog: DictCatalog, *names: str) -> dict[str, str]:
    values = compile_values({n: plain(n) for n in names}, max_output_chars=1000, max_render_ms=100)
    return values.render(event, catalog)


def test_the_spec_example_date_renders_in_every_documented_format(
    event: dict[str, Any], catalog: DictCatalog
) -> None:
    assert render(event, catalog, *DATES) == {
        "event_date": "2018-03-04T13:13:19.034315Z",
        "event_date_ymd": "2018-03-04",
        "event_date_rfc3339": "2018-03-04T13:13:19Z",
        "event_date_unix": "1520169199",
        "event_date_unixnano": "1520169199034315796",
    }


@pytest.mark.parametrize(
    ("date", "event_date", "unixnano"),
    [
        ("2023-03-17T15:07:00Z", "2023-03-17T15:07:00Z", "1679065620000000000"),
        ("2023-03-17T15:07:00.120000Z", "2023-03-17T15:07:00.12Z", "1679065620120000000"),
        ("2023-03-17T15:07:00.000000500Z", "2023-03-17T15:07:00Z", "1679065620000000500"),
        ("2023-03-17T15:07:00.000001Z", "2023-03-17T15:07:00.000001Z", "1679065620000001000"),
        ("2023-03-17T15:07:00.9999999Z", "2023-03-17T15:07:00.999999Z", "1679065620999999900"),
    ],
)
def test_event_date_drops_trailing_zeros_and_truncates_to_microseconds(
    event: dict[str, Any], catalog: DictCatalog, date: str, event_date: str, unixnano: str
) -> None:
    out = render({**event, "event_date": date}, catalog, "event_date", "event_date_unixnano")
    assert out == {"event_date": event_date, "event_date_unixnano": unixnano}


def test_a_date_with_an_offset_is_converted_to_utc_in_every_format(
    event: dict[str, Any], catalog: DictCatalog
) -> None:
    # 01:30 in Moscow on the 17th is 22:30 UTC on the 16th
    out = render({**event, "event_date": "2023-03-17T01:30:00.25+03:00"}, catalog, *DATES)
    assert out == {
        "event_date": "2023-03-16T22:30:00.25Z",
        "event_date_ymd": "2023-03-16",
        "event_date_rfc3339": "2023-03-16T22:30:00Z",
        "event_date_unix": "1679005800",
        "event_date_unixnano": "1679005800250000000",
    }


def test_dates_before_1970_and_small_years_are_formatted_correctly(catalog: DictCatalog) -> None:
    event = {"event_date": "0099-01-02T03:04:05.5Z"}
    out = render(event, catalog, "event_date", "event_date_ymd", "event_date_unix")
    assert out == {"event_date": "0099-01-02T03:04:05.5Z", "event_date_ymd": "0099-01-02",
                   "event_date_unix": "-59042897755"}  # (datetime(99,1,2,3,4,5) - epoch)


def test_the_event_date_is_worked_out_once_per_event_however_many_values_use_it(
    event: dict[str, Any], catalog: DictCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    real = parameters_module.event_timestamp
    monkeypatch.setattr(parameters_module, "event_timestamp", lambda e: calls.append(e) or real(e))
    values = compile_values(
        {**{n: plain(n) for n in DATES}, "both": "{{ event_date_ymd|upper }} {{ event_date_unix }}"},
        max_output_chars=1000, max_render_ms=100,
    )
    values.render(event, catalog)
    assert len(calls) == 1
    values.render(event, catalog)
    assert len(calls) == 2  # and again for the next event


def test_uuid_is_a_new_uuid4_per_event_shared_by_the_values_of_that_event(
    event: dict[str, Any], catalog: DictCatalog
) -> None:
    values = compile_values({"id": "{{uuid}}", "ref": "ref-{{ uuid }}", "up": "{{ uuid|upper }}"},
                            max_output_chars=1000, max_render_ms=100)
    first = values.render(event, catalog)
    second = values.render(event, catalog)
    assert uuid.UUID(first["id"]).version == 4
    assert first["ref"] == "ref-" + first["id"]
    assert first["up"] == first["id"].upper()
    assert second["id"] != first["id"]


def test_uuid_is_canonical_random_version_4_text() -> None:
    made = [parameters_module.uuid4() for _ in range(2000)]
    for text in made:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    assert len(set(made)) == len(made)
    # Every variant digit appears: the two random bits beside the variant's are kept.
    assert {text[19] for text in made} == set("89ab")


def test_catalog_names_are_looked_up_for_the_events_own_ids(event: dict[str, Any], catalog: DictCatalog) -> None:
    names = ["campaign_name", "campaign_subid", "database_name", "segment_name", "message_name",
             "message_subject", "resource_name"]
    assert render(event, catalog, *names) == {
        "campaign_name": "Black Friday",
        "campaign_subid": "bf-2024",
        "database_name": "Customers",
        "segment_name": "VIP",
        "message_name": "Welcome letter",
        "message_subject": "Hello, friend",
        "resource_name": "Main site",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"event_data": {}},  # ids absent
        {"event_data": {"campaign_id": 1, "message_id": 2, "segment_id": 0, "resource_id": 4}, "list_id": 5},
        {"event_data": {"campaign_id": True, "message_id": "17", "segment_id": None, "resource_id": [3]}},
    ],
)
def test_catalog_names_are_empty_when_not_applicable_or_unknown(
    event: dict[str, Any], catalog: DictCatalog, change: dict[str, Any]
) -> None:
    names = ["campaign_name", "campaign_subid", "segment_name", "message_name", "message_subject",
             "resource_name"]
    out = render({**event, **change}, catalog, *names, "database_name")
    assert set(out.values()) == ({""} if "list_id" in change else {"", "Customers"})
    assert all(out[n] == "" for n in names)


def test_an_entry_without_subid_or_subject_renders_empty(event: dict[str, Any]) -> None:
    bare = DictCatalog({("campaigns", 973): CatalogEntry("BF"), ("messages", 17): {"name": "W"}})
    assert render(event, bare, "campaign_name", "campaign_subid", "message_name", "message_subject") == {
        "campaign_name": "BF", "campaign_subid": "", "message_name": "W", "message_subject": "",
    }


def test_an_event_list_id_without_a_database_entry_gives_an_empty_database_name(
    event: dict[str, Any], catalog: DictCatalog
) -> None:
    assert render({**event, "list_id": 112}, catalog, "database_name") == {"database_name": ""}
    assert render({k: v for k, v in event.items() if k != "list_id"}, catalog, "database_name") == {
        "database_name": ""
    }


def test_the_events_own_fields_render_as_strings(event: dict[str, Any], catalog: DictCatalog) -> None:
    assert render(event, catalog, "profile_id", "list_id", "account_id", "event_type") == {
        "profile_id": "abcdefgh12345678", "list_id": "111", "account_id": "23", "event_type": "click",
    }


def test_absent_own_fields_render_empty(catalog: DictCatalog) -> None:
    event = {"event_date": "2023-03-17T15:07:00Z", "profile_id": None}
    assert render(event, catalog, "profile_id", "list_id", "account_id", "event_type") == {
        "profile_id": "", "list_id": "", "account_id": "", "event_type": "",
    }


def test_the_parameters_are_exactly_the_contract_table() -> None:
    assert set(PARAMETERS) == {
        "uuid", "event_date", "event_date_ymd", "event_date_rfc3339", "event_date_unix", "event_date_unixnano",
        "campaign_name", "campaign_subid", "database_name", "segment_name", "message_name", "message_subject",
        "resource_name", "profile_id", "list_id", "account_id", "event_type",
    }


def test_the_catalog_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown catalog kind 'templates'"):
        DictCatalog().put("templates", 1, "x")

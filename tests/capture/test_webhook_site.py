"""Webhook and site collect through a real engine to a real receiver; the visitor joined across sources."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks import Webhook as StandardWebhook

from tests.capture.conftest import make_source, refused_count
from tests.support.engine import Engine
from tests.support.receiver import Receiver

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SHOP = "http://shop.test"


def test_a_webhook_object_and_array_become_events_once_durable(capture_engine: Engine, hook_receiver: Receiver) -> None:
    src = make_source(capture_engine, hook_receiver, kind="webhook", event_types=["deliv", "undeliv"], list_id=5)
    reply = httpx.post(src.url("wh"), json={"profile_id": "p-1", "message_id": 3, "status": "ok", "nested": {"a": 1}})
    assert reply.status_code == 202, reply.text
    assert reply.json()["accepted"] == 1
    reply = httpx.post(src.url("wh"), json=[{"event": "undeliv", "campaign_id": "4"}, {"list_id": 9}])
    assert reply.status_code == 202
    ids = reply.json()["ids"]
    events = {e["event_id"]: e for e in src.wait_events(3)}
    first = next(e for e in events.values() if e["profile_id"] == "p-1")
    assert first["event_type"] == "deliv"
    assert first["event_data"]["params"] == {"status": "ok", "nested": '{"a":1}'}
    assert events[ids[0]]["event_type"] == "undeliv"
    assert events[ids[0]]["event_data"]["campaign_id"] == 4
    assert events[ids[1]]["list_id"] == 9


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ([{"message_id": 1}, {"message_id": "x"}], [1, "message_id"]),
        ([{"event": "click"}], [0, "event"]),
        ([{f"p{i}": 1 for i in range(65)}], [0, "p64"]),
        ([{"p": "v" * 2049}], [0, "p"]),
        ([{"x" * 65: 1}], [0, "x" * 64]),
        ([{"profile_id": 5}], [0, "profile_id"]),
        ([{"list_id": True}], [0, "list_id"]),
    ],
)
def test_a_webhook_is_validated_whole_and_422_names_index_and_field(
    capture_engine: Engine, hook_receiver: Receiver, body: list[dict[str, Any]], loc: list[Any]
) -> None:
    src = make_source(capture_engine, hook_receiver, kind="webhook", event_types=["deliv"])
    reply = httpx.post(src.url("wh"), json=body)
    assert reply.status_code == 422, reply.text
    assert loc in [d["loc"] for d in reply.json()["detail"]]
    assert httpx.post(src.url("wh"), json={"message_id": 77}).status_code == 202
    assert [e["event_data"]["message_id"] for e in src.wait_events(1)] == [77]  # nothing of the 422 request


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"not json", 422), (b"[1, 2]", 422), (b"[]", 422), (b'"x"', 422), (b"[" + b"{}," * 1000 + b"{}]", 422),
     (b"x" * (1024 * 1024 + 1), 413)],
)
def test_a_malformed_or_oversized_webhook_body_is_refused(
    capture_engine: Engine, hook_receiver: Receiver, body: bytes, status: int
) -> None:
    src = make_source(capture_engine, hook_receiver, kind="webhook", event_types=["deliv"])
    reply = httpx.post(src.url("wh"), content=body, headers={"content-type": "application/json"})
    assert reply.status_code == status
    assert reply.json()["detail"][0]["loc"] == ["body"]


def test_webhook_auth_basic_and_standard_webhooks(capture_engine: Engine, hook_receiver: Receiver) -> None:
    basic = make_source(capture_engine, hook_receiver, kind="webhook", event_types=["deliv"],
                        auth={"type": "basic", "username": "mta", "password": "s3cret"})
    assert httpx.post(basic.url("wh"), json={"message_id": 1}).status_code == 401
    assert httpx.post(basic.url("wh"), json={"message_id": 1}, auth=("mta", "wrong")).status_code == 401
    reply = httpx.post(basic.url("wh"), json={"message_id": 2}, auth=("mta", "s3cret"))
    assert reply.status_code == 202
    assert [e["event_data"]["message_id"] for e in basic.wait_events(1)] == [2]

    signed = make_source(capture_engine, hook_receiver, kind="webhook", event_types=["deliv"],
                         auth={"type": "standard_webhooks", "secret": WHSEC})
    body = orjson.dumps({"message_id": 3})
    now = int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "content-type": "application/json",
               "webhook-signature": StandardWebhook(WHSEC).sign("msg_1", _dt(now), body.decode())}
    first = httpx.post(signed.url("wh"), content=body, headers=headers)
    assert first.status_code == 202
    assert first.json()["ids"] == ["msg_1.0"]
    retry = httpx.post(signed.url("wh"), content=body, headers=headers)  # the sender's retry of msg_1
    assert (retry.status_code, retry.json()["ids"]) == (202, ["msg_1.0"])
    assert httpx.post(signed.url("wh"), content=orjson.dumps({"message_id": 4}), headers=headers).status_code == 401
    stale = headers | {"webhook-timestamp": str(now - 3600)}
    assert httpx.post(signed.url("wh"), content=body, headers=stale).status_code == 401
    assert httpx.post(signed.url("wh"), content=body, headers={"content-type": "application/json"}).status_code == 401
    body = orjson.dumps({"message_id": 5})
    signature = StandardWebhook(WHSEC).sign("msg_2", _dt(now), body.decode())
    headers |= {"webhook-id": "msg_2", "webhook-signature": signature}
    assert httpx.post(signed.url("wh"), content=body, headers=headers).status_code == 202
    assert [e["event_data"]["message_id"] for e in signed.wait_events(2)] == [3, 5]  # msg_1 once
    assert httpx.post(f"{capture_engine.base_url}/t/src_{'c' * 26}/wh", json={}).status_code == 404


def _dt(timestamp: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC)


def beacon(src: Any, body: dict[str, Any], origin: str = SHOP, cookie: str | None = None) -> httpx.Response:
    headers = {"origin": origin, "content-type": "text/plain;charset=UTF-8"}
    if cookie:
        headers["cookie"] = cookie
    return httpx.post(src.url("collect"), content=orjson.dumps(body), headers=headers)


def test_collect_answers_cors_only_for_allowed_origins(capture_engine: Engine, hook_receiver: Receiver) -> None:
    src = make_source(capture_engine, hook_receiver, kind="site", allowed_origins=[SHOP])
    preflight = httpx.options(src.url("collect"), headers={"origin": SHOP, "access-control-request-method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == SHOP
    assert preflight.headers["access-control-allow-credentials"] == "true"
    foreign = httpx.options(src.url("collect"), headers={"origin": "http://evil.test"})
    assert foreign.status_code == 403
    assert "access-control-allow-origin" not in foreign.headers
    before = refused_count(capture_engine, "site", "origin")
    for origin in ("http://evil.test", "http://shop.test.evil.test", "https://shop.test", "null", ""):
        reply = beacon(src, {"type": "page_view", "url": f"{SHOP}/"}, origin=origin)
        assert reply.status_code == 403, origin
        assert "access-control-allow-origin" not in reply.headers
    assert refused_count(capture_engine, "site", "origin") == before + 5
    reply = beacon(src, {"type": "page_view", "url": f"{SHOP}/?utm_source=x", "utm": {"utm_source": "x"}})
    assert reply.status_code == 204
    assert reply.headers["access-control-allow-origin"] == SHOP
    [event] = src.wait_events(1)
    assert event["event_type"] == "page_view"
    assert event["event_data"]["utm"] == {"utm_source": "x"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "purchase"}, "type"),
        ({"type": "site_event"}, "name"),
        ({"type": "site_event", "name": "x", "props": {"p": {"deep": 1}}}, "props.p"),
        ({"type": "site_event", "name": "x", "props": {f"k{i}": 1 for i in range(65)}}, "props"),
        ({"type": "page_view", "url": "u" * 2049}, "url"),
        ({"type": "identify", "traits": {"email": "a@b.example"}}, "traits.profile_id"),
        ({"type": "identify", "traits": {"profile_id": "p" * 201}}, "traits.profile_id"),
    ],
)
def test_bad_beacons_are_422_naming_the_field(
    capture_engine: Engine, hook_receiver: Receiver, body: dict[str, Any], field: str
) -> None:
    src = make_source(capture_engine, hook_receiver, kind="site", allowed_origins=[SHOP])
    reply = beacon(src, body)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", field]
    assert reply.headers["access-control-allow-origin"] == SHOP  # the page may read why


def test_a_beacon_over_16_kib_is_413(capture_engine: Engine, hook_receiver: Receiver) -> None:
    src = make_source(capture_engine, hook_receiver, kind="site", allowed_origins=[SHOP])
    assert beacon(src, {"type": "page_view", "title": "t" * 17_000}).status_code == 413


def test_after_identify_every_source_of_the_account_carries_the_profile(
    capture_engine: Engine, hook_receiver: Receiver
) -> None:
    site = make_source(capture_engine, hook_receiver, kind="site", allowed_origins=[SHOP], list_id=111)
    pixel = make_source(capture_engine, hook_receiver, kind="pixel", event_types=["open"])
    other_account = make_source(capture_engine, hook_receiver, account_id=24, kind="pixel")
    first = beacon(site, {"type": "page_view", "url": f"{SHOP}/"})
    cookie = f"ah_vid={first.cookies['ah_vid']}"
    site.wait_events(1)
    assert beacon(site, {"type": "identify", "traits": {"profile_id": "cust-42", "email": "a@b.example"}},
                  cookie=cookie).status_code == 204
    site.wait_events(2)
    assert beacon(site, {"type": "site_event", "name": "add_to_cart", "props": {"sku": "A1", "qty": 2}},
                  cookie=cookie).status_code == 204
    httpx.get(pixel.url("p.gif"), headers={"cookie": cookie})
    httpx.get(other_account.url("p.gif"), headers={"cookie": cookie})
    events = site.wait_events(3)
    page_view, identify, later = events
    visitor = first.cookies["ah_vid"]
    assert (page_view["profile_id"], page_view["event_data"]["visitor_id"]) == (None, visitor)
    assert identify["event_type"] == "identify"
    assert (identify["profile_id"], identify["list_id"]) == ("cust-42", 111)
    assert identify["event_data"]["visitor_id"] == visitor
    assert identify["event_data"]["traits"] == {"email": "a@b.example"}
    assert (later["event_type"], later["profile_id"], later["list_id"]) == ("site_event", "cust-42", 111)
    assert later["event_data"]["name"] == "add_to_cart"
    assert later["event_data"]["props"] == {"sku": "A1", "qty": 2}
    assert pixel.wait_events(1)[0]["profile_id"] == "cust-42"  # another source of the account
    assert other_account.wait_events(1)[0]["profile_id"] is None  # never another account


def test_the_script_is_served_cacheable_and_small(capture_engine: Engine, hook_receiver: Receiver) -> None:
    src = make_source(capture_engine, hook_receiver, kind="site", allowed_origins=[SHOP])
    reply = httpx.get(src.url("s.js"))
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/javascript")
    assert "max-age" in reply.headers["cache-control"]
    assert len(reply.content) < 4096
    assert b"sendBeacon" in reply.content
    assert httpx.get(f"{capture_engine.base_url}/t/src_{'d' * 26}/s.js").status_code == 404
    pixel = make_source(capture_engine, hook_receiver, kind="pixel")
    assert httpx.get(pixel.url("s.js")).status_code == 404  # each kind serves its own endpoints
    assert httpx.get(pixel.url("nope")).status_code == 404
    assert httpx.post(pixel.url("p.gif")).status_code == 405


def test_a_webhook_cannot_choose_its_account_type_date_or_test_flag(
    capture_engine: Engine, hook_receiver: Receiver
) -> None:
    src = make_source(capture_engine, hook_receiver, kind="webhook", event_types=["deliv"])
    forged = {"account_id": 24, "event_type": "click", "is_test": True, "event_date": "2000-01-01T00:00:00Z",
              "event_id": "chosen", "custom_data": {"x": 1}}
    reply = httpx.post(src.url("wh"), json=forged)
    assert reply.status_code == 202
    [event] = src.wait_events(1)
    assert (event["account_id"], event["event_type"], event["is_test"]) == (23, "deliv", False)
    assert event["event_id"] == reply.json()["ids"][0] != "chosen"
    assert not event["event_date"].startswith("2000")
    assert event["event_data"]["params"]["account_id"] == "24"
    assert "custom_data" not in event or event["custom_data"] != {"x": 1}

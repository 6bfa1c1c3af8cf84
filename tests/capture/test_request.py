"""Request -> event: parameter mapping and bounds, privacy, crawler and mail-proxy flags, event validity."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from starlette.requests import Request

from actionhooks.capture.agents import is_bot, mail_proxy
from actionhooks.capture.model import Source, SourceSpec
from actionhooks.capture.request import Refused, anonymize, event_from_params, request_env
from actionhooks.events import parse_events

NOW = datetime.now(UTC)


def source(**spec: Any) -> Source:
    return Source(id=5, account_id=23, key="src_" + "a" * 26, created_at=NOW, updated_at=NOW,
                  spec=SourceSpec.model_validate({"name": "s", "kind": "pixel", "list_id": 111, **spec}))


def request(headers: dict[str, str] | None = None, scheme: str = "http") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "query_string": b"",
                    "client": ("203.0.113.77", 5000), "scheme": scheme, "server": ("t.example", 443)})


def test_parameters_map_to_the_event_and_the_event_is_valid_for_the_pipeline() -> None:
    src = source(event_types=["pixel", "open"])
    env = request_env(src, request({"user-agent": "Mozilla/5.0 (X11) Firefox/120", "referer": "https://m.example/"}))
    event = event_from_params(src, env, [("event", "open"), ("profile_id", "p1"), ("campaign_id", "973"),
                                         ("message_id", "17"), ("send_message_id", "s-1"), ("utm", "x")])
    assert event["event_type"] == "open"
    assert event["account_id"] == 23
    assert event["list_id"] == 111
    assert event["profile_id"] == "p1"
    assert event["is_test"] is False
    data = event["event_data"]
    assert (data["campaign_id"], data["message_id"], data["pixel_id"]) == (973, 17, 5)
    assert data["send_message_id"] == "s-1"
    assert data["params"] == {"utm": "x"}
    assert data["ip"] == "203.0.113.0"
    assert data["referer"] == "https://m.example/"
    assert data["visitor_id"] == env.visitor_id
    assert data["is_bot"] is False
    assert data["proxy"] is None
    assert event["event_date"].endswith("Z")
    assert len(event["event_date"].split(".")[1]) == 10  # nine digits and Z
    parse_events(orjson.dumps(event), max_events=1)  # what POST /events would accept


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        ([(f"p{i}", "v") for i in range(65)], "too_many_params"),
        ([("p" * 65, "v")], "param_name_too_long"),
        ([("p", "v" * 2049)], "param_value_too_long"),
        ([("campaign_id", "x")], "bad_param"),
        ([("campaign_id", "-1")], "bad_param"),
        ([("campaign_id", "99999999999999999999")], "bad_param"),
        ([("campaign_id", "١٢")], "bad_param"),  # Arabic-Indic digits are digits to Python, not to us
        ([("list_id", "")], "bad_param"),
        ([("profile_id", "p" * 201)], "bad_param"),
        ([("profile_id", "p\x00")], "bad_param"),
        ([("event", "click")], "event_not_allowed"),
        ([("a", "1"), ("a", "2")], "duplicate_param"),
    ],
)
def test_parameters_beyond_the_bounds_refuse_the_request(items: list[tuple[str, str]], reason: str) -> None:
    src = source()
    with pytest.raises(Refused) as refused:
        event_from_params(src, request_env(src, request()), items)
    assert refused.value.reason == reason


def test_sixty_four_parameters_of_the_largest_size_are_kept() -> None:
    src = source()
    items = [(f"{i:02d}".ljust(64, "n"), "v" * 2048) for i in range(64)]
    event = event_from_params(src, request_env(src, request()), items)
    assert len(event["event_data"]["params"]) == 64


@pytest.mark.parametrize("header", [{"dnt": "1"}, {"sec-gpc": "1"}])
def test_do_not_track_drops_cookie_ip_and_visitor(header: dict[str, str]) -> None:
    src = source()
    env = request_env(src, request({**header, "cookie": "ah_vid=" + "b" * 32}))
    assert (env.ip, env.visitor_id, env.set_cookie) == (None, None, None)
    env = request_env(source(respect_do_not_track=False), request(header))
    assert env.visitor_id is not None


def test_the_visitor_cookie_is_kept_renewed_and_secure_over_https() -> None:
    src = source(cookie_name="BpmTrackingId")
    guid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    env = request_env(src, request({"cookie": f"BpmTrackingId={guid}"}, scheme="https"))
    assert env.visitor_id == guid
    assert env.set_cookie == f"BpmTrackingId={guid}; Max-Age=63072000; Path=/; SameSite=None; Secure; HttpOnly"
    fresh = request_env(src, request({"cookie": "BpmTrackingId=<script>"}))
    assert fresh.visitor_id is not None
    assert len(fresh.visitor_id) == 32
    assert fresh.visitor_id != guid
    assert "SameSite=Lax" in (fresh.set_cookie or "")


def test_anonymize_ip_drops_the_last_octet_or_80_bits() -> None:
    assert anonymize("198.51.100.213") == "198.51.100.0"
    assert anonymize("2001:db8:1234:5678:9abc::1") == "2001:db8:1234::"
    assert anonymize("not-an-ip") is None
    src = source(anonymize_ip=False)
    assert request_env(src, request()).ip == "203.0.113.77"


@pytest.mark.parametrize(
    ("agent", "proxy", "bot"),
    [
        ("Mozilla/5.0", "apple_mpp", False),
        ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "gmail", True),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", "yahoo", True),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", None, True),
        ("curl/8.5.0", None, True),
        ("", None, True),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 "
         "Safari/605.1.15", None, False),
    ],
)
def test_mail_proxies_and_crawlers_are_flagged(agent: str, proxy: str | None, bot: bool) -> None:
    assert mail_proxy(agent) == proxy
    assert is_bot(agent) is bot

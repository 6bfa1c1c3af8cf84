"""Pixel and redirect endpoints through a real engine to a real receiver: answers, events, hostile input."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.capture.conftest import make_source, refused_count
from tests.support.engine import Engine
from tests.support.receiver import Receiver

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def assert_gif(reply: httpx.Response) -> None:
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "image/gif"
    assert "no-store" in reply.headers["cache-control"]
    assert reply.content == GIF


def test_a_pixel_hit_is_delivered_as_the_sources_event(capture_engine: Engine, hook_receiver: Receiver) -> None:
    src = make_source(capture_engine, hook_receiver, kind="pixel", list_id=111, event_types=["open", "pixel"])
    reply = httpx.get(src.url("p.gif"), params={"profile_id": "p-1", "campaign_id": "973", "message_id": "17",
                                                "send_message_id": "s-1", "utm_source": "mail"},
                      headers={"user-agent": BROWSER, "referer": "https://mail.example/"})
    assert_gif(reply)
    visitor = reply.cookies["ah_vid"]
    assert "Max-Age=63072000" in reply.headers["set-cookie"]
    assert "SameSite=Lax" in reply.headers["set-cookie"]
    [event] = src.wait_events(1)
    assert event["event_type"] == "open"
    assert (event["account_id"], event["list_id"], event["profile_id"]) == (23, 111, "p-1")
    assert event["is_test"] is False
    assert event["event_id"]
    data = event["event_data"]
    assert (data["campaign_id"], data["message_id"], data["pixel_id"]) == (973, 17, src.source["id"])
    assert data["send_message_id"] == "s-1"
    assert data["params"] == {"utm_source": "mail"}
    assert data["ip"] == "127.0.0.0"  # anonymize_ip by default
    assert (data["user_agent"], data["referer"]) == (BROWSER, "https://mail.example/")
    assert data["visitor_id"] == visitor
    assert (data["is_bot"], data["proxy"]) == (False, None)


def test_a_pixel_always_answers_the_image_and_captures_nothing_it_should_not(
    capture_engine: Engine, hook_receiver: Receiver
) -> None:
    src = make_source(capture_engine, hook_receiver, kind="pixel")
    before = {r: refused_count(capture_engine, "pixel", r)
              for r in ("unknown_source", "bad_param", "too_many_params", "param_value_too_long", "bad_query")}
    hostile = [
        f"{capture_engine.base_url}/t/src_{'a' * 26}/p.gif",
        f"{capture_engine.base_url}/t/not-a-key/p.gif",
        src.url("p.gif") + "?campaign_id=abc",
        src.url("p.gif") + "?" + "&".join(f"p{i}=v" for i in range(100)),
        src.url("p.gif") + "?p=" + "v" * 2049,
        src.url("p.gif") + "?p=%ff%fe",
        src.url("p.gif") + "?event=click",
    ]
    for url in hostile:
        assert_gif(httpx.get(url))
    head = httpx.head(src.url("p.gif"))  # link checkers: the image's headers, no capture
    assert (head.status_code, head.headers["content-type"], head.headers["content-length"]) == (200, "image/gif", "42")
    assert refused_count(capture_engine, "pixel", "unknown_source") == before["unknown_source"] + 2
    assert refused_count(capture_engine, "pixel", "bad_param") == before["bad_param"] + 1
    assert refused_count(capture_engine, "pixel", "too_many_params") == before["too_many_params"] + 1
    assert refused_count(capture_engine, "pixel", "param_value_too_long") == before["param_value_too_long"] + 1
    assert refused_count(capture_engine, "pixel", "bad_query") == before["bad_query"] + 1
    # a good hit afterwards is the only event delivered
    assert_gif(httpx.get(src.url("p.gif"), params={"message_id": "1"}))
    events = src.wait_events(1)
    assert [e["event_data"]["message_id"] for e in events] == [1]


def test_a_stopped_or_deleted_pixel_captures_nothing(capture_engine: Engine, hook_receiver: Receiver) -> None:
    src = make_source(capture_engine, hook_receiver, kind="pixel")
    with capture_engine.client() as admin:
        assert admin.patch(f"/sources/{src.source['id']}", json={"active": False}).status_code == 200
        assert_gif(httpx.get(src.url("p.gif"), params={"message_id": "1"}))
        assert admin.patch(f"/sources/{src.source['id']}", json={"active": True}).status_code == 200
        assert_gif(httpx.get(src.url("p.gif"), params={"message_id": "2"}))
        assert [e["event_data"]["message_id"] for e in src.wait_events(1)] == [2]
        assert admin.delete(f"/sources/{src.source['id']}").status_code == 204
    before = refused_count(capture_engine, "pixel", "unknown_source")
    assert_gif(httpx.get(src.url("p.gif"), params={"message_id": "3"}))
    assert refused_count(capture_engine, "pixel", "unknown_source") == before + 1


def test_mail_proxies_crawlers_and_do_not_track(capture_engine: Engine, hook_receiver: Receiver) -> None:
    src = make_source(capture_engine, hook_receiver, kind="pixel")
    agents = {
        "1": "Mozilla/5.0",
        "2": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        "3": "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
        "4": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    }
    for message_id, agent in agents.items():
        assert_gif(httpx.get(src.url("p.gif"), params={"message_id": message_id}, headers={"user-agent": agent}))
    dnt = httpx.get(src.url("p.gif"), params={"message_id": "5"}, headers={"user-agent": BROWSER, "dnt": "1"})
    assert_gif(dnt)
    assert "set-cookie" not in dnt.headers
    by_message = {e["event_data"]["message_id"]: e["event_data"] for e in src.wait_events(5)}
    assert [by_message[i]["proxy"] for i in (1, 2, 3, 4)] == ["apple_mpp", "gmail", "yahoo", None]
    assert by_message[4]["is_bot"] is True
    assert (by_message[5]["ip"], by_message[5]["visitor_id"], by_message[5]["is_bot"]) == (None, None, False)


def test_the_visitor_cookie_is_kept_under_its_configured_name(capture_engine: Engine, hook_receiver: Receiver) -> None:
    src = make_source(capture_engine, hook_receiver, kind="pixel", cookie_name="BpmTrackingId")
    guid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    reply = httpx.get(src.url("p.gif"), headers={"cookie": f"BpmTrackingId={guid}"})
    assert reply.cookies["BpmTrackingId"] == guid
    assert src.wait_events(1)[0]["event_data"]["visitor_id"] == guid


def test_a_redirect_to_an_allowed_host_is_a_click(capture_engine: Engine, hook_receiver: Receiver) -> None:
    src = make_source(capture_engine, hook_receiver, kind="redirect", allowed_hosts=["shop.example", "*.shop.example"])
    to = "https://www.shop.example/item?id=7"
    reply = httpx.get(src.url("r"), params={"to": to, "campaign_id": "5", "link_id": "3", "profile_id": "p"})
    assert reply.status_code == 302
    assert reply.headers["location"] == to
    assert reply.cookies["ah_vid"]
    [event] = src.wait_events(1)
    assert event["event_type"] == "click"
    assert event["event_data"]["url"] == to
    assert (event["event_data"]["campaign_id"], event["event_data"]["link_id"]) == (5, 3)
    assert event["event_data"]["params"] == {}


@pytest.mark.parametrize(
    "to",
    [
        "javascript:alert(document.cookie)",
        "//evil.example/",
        "https://shop.example.evil.example/",
        "https://shop.example@evil.example/",
        "https:\\\\evil.example",
        "https://evil.example/?https://shop.example/",
        "data:text/html;base64,PHNjcmlwdD4=",
    ],
)
def test_a_redirect_is_never_open(capture_engine: Engine, hook_receiver: Receiver, to: str) -> None:
    src = make_source(capture_engine, hook_receiver, kind="redirect", allowed_hosts=["shop.example"])
    reply = httpx.get(src.url("r"), params={"to": to})
    assert reply.status_code == 400
    assert "location" not in reply.headers
    assert reply.headers["content-type"].startswith("text/plain")
    assert "cannot be followed" in reply.text


def test_redirect_answers_for_unknown_keys_tampered_signatures_and_bad_params(
    capture_engine: Engine, hook_receiver: Receiver
) -> None:
    src = make_source(capture_engine, hook_receiver, kind="redirect", allowed_hosts=["shop.example"])
    assert httpx.get(f"{capture_engine.base_url}/t/src_{'b' * 26}/r", params={"to": "https://shop.example/"}
                     ).status_code == 404
    with capture_engine.client() as admin:
        url = admin.post(f"/sources/{src.source['id']}/links",
                         json={"to": "https://partner.example/", "params": {"message_id": 9}}).json()["url"]
    assert httpx.get(url.replace("message_id=9", "message_id=8")).status_code == 400
    assert httpx.get(url.replace("partner.example", "evil.example")).status_code == 400
    assert httpx.get(url + "x").status_code == 400
    assert httpx.get(src.url("r"), params=[("to", "https://shop.example/"), ("to", "https://evil.example/")]
                     ).status_code == 400
    # a safe link with an out-of-bounds parameter still takes the reader there; it is only not captured
    reply = httpx.get(src.url("r"), params={"to": "https://shop.example/", "campaign_id": "x"})
    assert reply.status_code == 302
    reply = httpx.get(url)
    assert reply.status_code == 302
    assert reply.headers["location"] == "https://partner.example/"
    events = src.wait_events(1)
    assert [e["event_data"]["message_id"] for e in events] == [9]

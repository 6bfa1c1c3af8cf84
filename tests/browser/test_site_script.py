"""s.js in a real browser: a shop page on http://shop.test:PORT loads the script from the engine on
http://t.shop.test:PORT (another origin, same site, so the visitor cookie flows), through a real hook to
a real receiver: page view with UTM fields, custom event, identify, a reload keeping the visitor and
carrying the profile, no console errors; a page on a foreign origin gets 403 and captures nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.browser.conftest import console_errors
from tests.capture.conftest import make_source, refused_count
from tests.support.engine import Engine, poll, running_engine
from tests.support.receiver import Receiver

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shop home</title><link rel="icon" href="data:,">
<script>window.actionhooks=window.actionhooks||{q:[],track:function(){this.q.push(["track",arguments])},
identify:function(){this.q.push(["identify",arguments])}};</script>
<script async src="SCRIPT"></script></head>
<body><h1>Shop</h1>
<button onclick="actionhooks.track('add_to_cart', {sku: 'A1', qty: 2})">Add to cart</button>
<button onclick="actionhooks.identify({profile_id: 'cust-7', email: 'ann@example.com'})">Sign up</button>
</body></html>"""


class Pages:
    """A loopback HTTP server answering every path with the shop page (whatever host name it is reached by)."""

    def __init__(self) -> None:
        self.html = b""
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(pages.html)))
                self.end_headers()
                self.wfile.write(pages.html)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with running_engine(tmp_path_factory.mktemp("browser"), "api", "worker", "scheduler") as running:
        yield running


@pytest.fixture
def pages() -> Iterator[Pages]:
    server = Pages()
    try:
        yield server
    finally:
        server.close()


def test_the_site_script_tracks_a_visitor_from_page_view_to_identified_profile(
    browser: Browser, engine: Engine, receiver: Receiver, pages: Pages, tmp_path: Path
) -> None:
    shop = f"http://shop.test:{pages.port}"
    src = make_source(engine, receiver, kind="site", allowed_origins=[shop], list_id=111)
    pages.html = PAGE.replace("SCRIPT", f"http://t.shop.test:{engine.port}/t/{src.key}/s.js").encode()
    context = browser.new_context()
    page = context.new_page()
    errors = console_errors(page)

    page.goto(f"{shop}/spring?utm_source=news&utm_medium=email&utm_campaign=spring&utm_content=hero&x=1")
    [view] = src.wait_events(1)
    assert view["event_type"] == "page_view"
    assert view["event_data"]["url"].startswith(f"{shop}/spring?utm_source=news")
    assert view["event_data"]["title"] == "Shop home"
    assert view["event_data"]["utm"] == {"utm_source": "news", "utm_medium": "email", "utm_campaign": "spring",
                                         "utm_content": "hero"}
    visitor = view["event_data"]["visitor_id"]
    assert visitor
    assert view["profile_id"] is None

    page.get_by_role("button", name="Add to cart").click()
    custom = src.wait_events(2)[1]
    assert custom["event_type"] == "site_event"
    assert custom["event_data"]["name"] == "add_to_cart"
    assert custom["event_data"]["props"] == {"sku": "A1", "qty": 2}
    assert custom["event_data"]["visitor_id"] == visitor

    page.get_by_role("button", name="Sign up").click()
    identify = src.wait_events(3)[2]
    assert identify["event_type"] == "identify"
    assert (identify["profile_id"], identify["list_id"]) == ("cust-7", 111)
    assert identify["event_data"]["visitor_id"] == visitor
    assert identify["event_data"]["traits"] == {"email": "ann@example.com"}

    page.reload()
    again = src.wait_events(4)[3]
    assert again["event_type"] == "page_view"
    assert again["event_data"]["visitor_id"] == visitor  # the cookie survived the reload
    assert again["profile_id"] == "cust-7"  # a later event of the visitor carries the profile
    assert errors == []
    page.screenshot(path=str(tmp_path / "shop.png"))
    context.close()


def test_a_page_on_a_foreign_origin_is_refused_with_403(
    browser: Browser, engine: Engine, receiver: Receiver, pages: Pages
) -> None:
    src = make_source(engine, receiver, kind="site", allowed_origins=[f"http://shop.test:{pages.port}"])
    script = f"http://t.shop.test:{engine.port}/t/{src.key}/s.js"
    pages.html = PAGE.replace("SCRIPT", script).encode()
    before = refused_count(engine, "site", "origin")
    page = browser.new_page()
    statuses: list[int] = []
    page.on("response", lambda response: statuses.append(response.status) if "/collect" in response.url else None)
    page.goto(f"http://evil.test:{pages.port}/")
    page.wait_for_function("window.actionhooks && window.actionhooks.loaded === true")
    poll(lambda: refused_count(engine, "site", "origin") > before, "the foreign beacon to be refused")
    poll(lambda: statuses, "the browser to see the collect answer")
    assert statuses == [403]
    # the same page from the allowed origin is captured; the foreign one never was
    page.goto(f"http://shop.test:{pages.port}/")
    events = src.wait_events(1)
    assert [e["event_data"]["url"] for e in events] == [f"http://shop.test:{pages.port}/"]
    page.close()

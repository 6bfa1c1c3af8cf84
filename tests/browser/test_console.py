"""The console in a real browser: headless Chromium (the OS package) driven by Playwright, on a real engine.

One walk through what a master user does (log in, create a hook while watching the preview, stop and
activate it, edit and save, send a test, replay a failed batch until the list is empty), then what a
hostile or foreign user tries: another account's token, and a forged cross-site POST. The walk saves
the screenshots the README shows (docs/console/*.png).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.engine import Engine, event, poll, running_engine
from tests.support.receiver import Receiver, Reply

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
ATTEMPTS = 2


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder = tmp_path_factory.mktemp("console")
    with running_engine(folder, "run", HOOK_RETRY_TIMES=ATTEMPTS, HOOK_RETRY_PERIOD_SEC=[0.3]) as eng:
        yield eng


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # Stop and Delete ask for confirmation
    try:
        yield page
    finally:
        context.close()


def log_in(page: Page, engine: Engine, token: str, *, shot: str | None = None) -> None:
    page.goto(f"{engine.base_url}/console/")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.get_by_label("Token").fill(token)
    if shot:
        page.screenshot(path=SHOTS / shot)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Hooks", exact=True)).to_be_visible()


def preview(page: Page):
    return page.get_by_role("region", name="Preview")


def test_a_master_user_configures_tests_and_repairs_a_hook(page: Page, engine: Engine, receiver: Receiver) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    api = engine.client()
    log_in(page, engine, engine.token(), shot="login.png")

    # Create a hook, watching the preview follow the typing
    page.get_by_role("link", name="Create hook").click()
    page.get_by_label("Name", exact=True).fill("CRM sync")
    page.get_by_label("open", exact=True).check()
    page.get_by_label("click", exact=True).check()
    page.get_by_label("Key").first.fill("ref")
    value = page.get_by_label("Value").first
    value.press_sequentially("crm-{{profile_id}}", delay=20)
    expect(preview(page)).to_contain_text('"ref": "crm-test-profile"')
    page.get_by_role("button", name="Add value").click()
    page.get_by_label("Key").nth(1).fill("broken")
    page.get_by_label("Value").nth(1).press_sequentially("{{ profile_id", delay=20)
    expect(preview(page).locator(".error")).to_contain_text("broken")  # the template error, with its key
    page.get_by_label("Value").nth(1).fill("")
    page.get_by_label("Key").nth(1).fill("")
    page.get_by_label("URL").fill(receiver.url)
    page.get_by_label("Batch timeout (seconds)").fill("0.2")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    hook_id = int(re.search(r"/console/hooks/(\d+)", page.url).group(1))
    stored = api.get(f"/hooks/{hook_id}").json()
    assert stored["custom_data"]["values"] == {"ref": "crm-{{profile_id}}"}
    assert stored["actions"] == ["open", "click"]

    # Errors come back next to the field they name, from the API's own validation
    page.get_by_label("Name", exact=True).fill("")
    page.get_by_label("URL").fill("not a url")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#err-name")).to_be_visible()
    expect(page.locator("#err-http-url")).to_contain_text("URL")
    assert api.get(f"/hooks/{hook_id}").json()["name"] == "CRM sync"  # nothing of it was saved

    # The list shows it; Stop and Activate change its state
    page.get_by_role("link", name="Hooks", exact=True).first.click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="CRM sync"))
    expect(row).to_contain_text("Active")
    row.get_by_role("button", name="Stop").click()
    expect(row).to_contain_text("Stopped")
    assert api.get(f"/hooks/{hook_id}").json()["active"] is False
    row.get_by_role("button", name="Activate").click()
    expect(row).to_contain_text("Active")
    assert api.get(f"/hooks/{hook_id}").json()["active"] is True

    # Edit: the preview changes while typing; Save keeps the write-only signing secret
    secret_before = _signing_secret(engine, hook_id)
    page.get_by_role("link", name="CRM sync").click()
    value = page.get_by_label("Value").first
    value.fill("")
    value.press_sequentially("lead-{{event_type}}", delay=20)
    expect(preview(page)).to_contain_text('"ref": "lead-open"')  # the sample is the hook's first action
    page.get_by_label("Sample event").select_option("click")
    expect(preview(page)).to_contain_text('"ref": "lead-click"')
    page.get_by_role("heading", name="Custom data").evaluate("heading => heading.scrollIntoView()")
    page.screenshot(path=SHOTS / "editor.png")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    assert api.get(f"/hooks/{hook_id}").json()["custom_data"]["values"] == {"ref": "lead-{{event_type}}"}
    assert _signing_secret(engine, hook_id) == secret_before

    # Send test: one real attempt, its payload, status, body and latency
    receiver.default = Reply(status=200, body=b'{"accepted": true}')
    page.get_by_role("button", name="Send test").click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("Status 200")
    expect(result).to_contain_text('{"accepted": true}')
    expect(result).to_contain_text("lead-click")
    expect(result).to_contain_text(re.compile(r"Latency [\d.]+ ms"))
    tested = receiver.wait_for(1)
    assert b"lead-click" in tested[-1].body

    # A receiver that fails every attempt puts a batch on the failed list ...
    receiver.answer(*[Reply(status=500, body=b"down")] * ATTEMPTS)
    before = len(receiver.requests)
    assert api.post("/events", json=[event(1, event_type="open", event_id="console-1")]).status_code == 202
    poll(lambda: api.get(f"/hooks/{hook_id}/failed").json(), "the batch on the failed list", timeout=60)
    assert len(receiver.requests) == before + ATTEMPTS

    # ... and "Replay all" sends it again, showing progress until the list is empty
    page.get_by_role("link", name="Failed").click()
    expect(page.get_by_role("heading", name="Failed batches")).to_be_visible()
    expect(page.get_by_role("row")).to_have_count(2)  # the header and one batch
    page.screenshot(path=SHOTS / "failed.png", full_page=True)
    page.get_by_role("button", name="Replay all").click()
    expect(page.get_by_text("The failed list is empty.").first).to_be_visible(timeout=60_000)
    assert api.get(f"/hooks/{hook_id}/failed").json() == []
    receiver.wait_until(lambda got: any(b"console-1" in r.body for r in got[before + ATTEMPTS :]), "the replay")

    # Attempts shows the two failures and the replay's success, newest first
    page.get_by_role("link", name="Attempts").click()
    outcomes = page.get_by_role("row").filter(has_text=re.compile(r"\b(ok|error)\b"))
    expect(outcomes).to_have_count(ATTEMPTS + 1)
    expect(outcomes.first).to_contain_text("ok")
    page.screenshot(path=SHOTS / "attempts.png", full_page=True)

    # The list and its chart show delivered and failed events
    page.get_by_role("link", name="Hooks", exact=True).first.click()
    expect(row).to_contain_text("Active")
    expect(page.get_by_role("img")).to_have_attribute("aria-label", re.compile(r"[1-9]\d* events delivered, [1-9]"))
    page.screenshot(path=SHOTS / "hooks.png", full_page=True)
    page.locator("figure.chart").screenshot(path=SHOTS / "chart.png")
    api.close()


def test_a_master_user_creates_a_site_source_and_sees_what_its_snippet_captures(
    page: Page, engine: Engine
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    shop = Receiver()  # the shop's own web server, on another origin than the engine
    shop_origin = f"http://127.0.0.1:{shop.port}"
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=engine.base_url)
    try:
        log_in(page, engine, engine.token())
        page.get_by_role("link", name="Sources", exact=True).click()
        page.get_by_role("link", name="Create source").click()
        page.get_by_label("Name", exact=True).fill("Shop site")
        page.get_by_label("Kind").select_option(label="Site script")
        page.get_by_label("Database").fill("111")
        page.get_by_label("Allowed origins").fill(shop_origin)
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("Created.")
        source_url = page.url.split("?")[0]

        # Copy the site snippet, as a user pasting it into the shop's pages would
        page.get_by_role("button", name="Copy site snippet").click()
        expect(page.get_by_role("button", name="Copied")).to_be_visible()
        snippet = page.evaluate("navigator.clipboard.readText()")
        assert snippet == page.get_by_label("Site snippet").input_value()
        assert "/s.js" in snippet

        # A visitor opens a shop page carrying the snippet
        html = f"<!doctype html><html><head><title>Shop home</title>{snippet}</head><body>Shop</body></html>"
        shop.default = Reply(body=html.encode(), headers={"Content-Type": "text/html"})
        page.goto(source_url)
        expect(page.get_by_text("Nothing captured yet.")).to_be_visible()
        visitor = page.context.new_page()
        visitor.goto(f"{shop_origin}/welcome?utm_source=console-test")
        expect(visitor).to_have_title("Shop home")

        # The source's page, left open, shows the captured page view by itself (it polls the list)
        captured = page.get_by_role("row").filter(has_text="page_view")
        expect(captured).to_have_count(1, timeout=30_000)
        expect(captured).to_contain_text(f"{shop_origin}/welcome?utm_source=console-test")
        page.screenshot(path=SHOTS / "sources.png", full_page=True)
    finally:
        shop.close()


def test_another_accounts_token_sees_nothing_of_it(page: Page, engine: Engine, receiver: Receiver) -> None:
    with engine.client() as api:
        hook = api.post("/hooks", json=_hook("Private hook", receiver.url)).json()
    log_in(page, engine, engine.token(account_id=24))
    expect(page.get_by_text("No hooks yet.")).to_be_visible()
    expect(page.get_by_text("Private hook")).to_have_count(0)
    for path in ("", "/attempts", "/failed"):
        answer = page.goto(f"{engine.base_url}/console/hooks/{hook['id']}{path}")
        assert answer is not None
        assert answer.status == 404
        expect(page.get_by_text("Private hook")).to_have_count(0)
    # Its own CSRF token does not let it act on the hook either
    page.goto(f"{engine.base_url}/console/hooks")
    csrf = page.locator("input[name=csrf]").first.input_value()
    answer = page.request.post(
        f"{engine.base_url}/console/hooks/{hook['id']}/delete", form={"csrf": csrf, "confirmed": "yes"}
    )
    assert answer.status == 404
    # An ingest token of the hook's own account does not open the console
    page.context.clear_cookies()
    page.goto(f"{engine.base_url}/console/login")
    page.get_by_label("Token").fill(engine.token(scope="ingest"))
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("admin token")
    with engine.client() as api:
        assert api.get(f"/hooks/{hook['id']}").status_code == 200


def test_a_forged_cross_site_post_changes_nothing(page: Page, engine: Engine, receiver: Receiver) -> None:
    with engine.client() as api:
        hook = api.post("/hooks", json=_hook("Target of a forgery", receiver.url)).json()
    log_in(page, engine, engine.token())
    # Another origin on the same host (so even SameSite=Strict sends the session cookie) posts a form
    forged = (
        f'<form id="f" method="post" action="{engine.base_url}/console/hooks/{hook["id"]}/delete">'
        '<input name="confirmed" value="yes"><input name="csrf" value="guessed"></form>'
        '<script>document.getElementById("f").submit()</script>'
    ).encode()
    evil = Receiver()
    evil.default = Reply(body=forged, headers={"Content-Type": "text/html"})
    try:
        page.goto(f"http://127.0.0.1:{evil.port}/page")
        expect(page).to_have_url(re.compile(r"/console/hooks/\d+/delete$"))
        expect(page.get_by_role("heading", name="Request refused")).to_be_visible()
    finally:
        evil.close()
    with engine.client() as api:
        assert api.get(f"/hooks/{hook['id']}").status_code == 200
    # Log out ends the session: the console asks for a token again
    page.goto(f"{engine.base_url}/console/hooks")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.goto(f"{engine.base_url}/console/hooks")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def _hook(name: str, url: str) -> dict[str, object]:
    return {"name": name, "actions": ["open"], "delivery": {"type": "http", "url": url}}


def _signing_secret(engine: Engine, hook_id: int) -> str:
    """The stored signing secret, read from the database (the API only ever shows "***")."""
    db = engine.folder / "data" / "actionhooks.db"
    with sqlite3.connect(db) as conn:
        (delivery,) = conn.execute("SELECT delivery FROM hooks WHERE id = ?", (hook_id,)).fetchone()
    return str(json.loads(delivery)["signing_secret"])


def test_pages_make_no_third_party_requests(browser: Browser, engine: Engine) -> None:
    context = browser.new_context()
    page = context.new_page()
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    try:
        log_in(page, engine, engine.token())
        page.get_by_role("link", name="Create hook").click()
        expect(page.get_by_role("region", name="Preview")).to_be_visible()
    finally:
        context.close()
    assert seen
    assert all(httpx.URL(url).host == "127.0.0.1" for url in seen), seen

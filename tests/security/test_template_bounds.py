"""Issue 15, points 1 and 2: templates and their inputs are bounded before any memory or stack is spent.

The attacks are the issue's own: deep nesting that used to raise RecursionError/SyntaxError (a 500),
a concatenation bomb over a huge input, and amplification of a long catalog name across many values.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from actionhooks.errors import TemplateRenderError
from actionhooks.storage.tables import Hook
from actionhooks.templating import DictCatalog, build_custom_data, compile_values
from actionhooks.templating.environment import MAX_NESTING, MAX_OPERATORS, MAX_TEMPLATE_CHARS
from tests.support.engine import event

NESTING_ATTACKS = {
    "parentheses": "{{ " + "(" * 150 + "uuid" + ")" * 150 + " }}",
    "filters": "{{ uuid" + "|upper" * 300 + " }}",
    "ifs": "{% if uuid %}" * 120 + "x" + "{% endif %}" * 120,
    "nots": "{{ " + "not " * 2000 + "uuid }}",
    "ands": "{{ uuid" + " and uuid" * 1500 + " }}",
    "bomb": "{{ " + " ~ ".join(["profile_id"] * 800) + " }}",
    "short bomb": "{{ " + "~".join(["profile_id"] * 100) + " }}",  # within the length limit
    "brackets": "{{ profile_id" + "[0:]" * 40 + " }}",
}


def hook_with(values: dict[str, str], **delivery: Any) -> dict[str, Any]:
    return {"name": "bounded", "actions": ["click"], "custom_data": {"values": values},
            "delivery": delivery or {"type": "http", "url": "http://127.0.0.1:9/"}}


def hook_count(app: FastAPI) -> int:
    with app.state.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Hook)) or 0)


@pytest.mark.parametrize("source", NESTING_ATTACKS.values(), ids=NESTING_ATTACKS.keys())
def test_a_template_too_deep_long_or_busy_is_a_422_naming_the_key_on_create_and_patch(
    app: FastAPI, client: TestClient, owner: dict[str, str], source: str
) -> None:
    created = client.post("/api/v1/hooks", json=hook_with({"fine": "{{uuid}}", "evil": source}), headers=owner)
    assert created.status_code == 422, created.text
    assert [d["loc"] for d in created.json()["detail"]] == [["body", "custom_data", "values", "evil"]]
    assert hook_count(app) == 0
    hook_id = client.post("/api/v1/hooks", json=hook_with({"fine": "{{uuid}}"}), headers=owner).json()["id"]
    patched = client.patch(f"/api/v1/hooks/{hook_id}", json={"custom_data": {"values": {"evil": source}}},
                           headers=owner)
    assert patched.status_code == 422, patched.text
    assert patched.json()["detail"][0]["loc"] == ["body", "custom_data", "values", "evil"]


@pytest.mark.parametrize("source", NESTING_ATTACKS.values(), ids=NESTING_ATTACKS.keys())
def test_the_kafka_key_template_is_bounded_the_same_way(
    client: TestClient, owner: dict[str, str], source: str
) -> None:
    kafka = {"type": "kafka", "bootstrap_servers": "127.0.0.1:9", "topic": "t", "key": source[:1000]}
    response = client.post("/api/v1/hooks", json=hook_with({}, **kafka), headers=owner)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "delivery", "key"]


def test_the_limits_leave_room_for_real_templates(client: TestClient, owner: dict[str, str]) -> None:
    real = {
        "id": "{{uuid}}",
        "when": "{{ event_date_rfc3339 }}",
        "label": "{% if campaign_name %}{{ campaign_name | upper | truncate(40) }}{% else %}none{% endif %}",
        "nested": "{{ " + "(" * (MAX_NESTING - 1) + "profile_id" + ")" * (MAX_NESTING - 1) + " }}",
        "busy": "{{ " + " ~ ".join(["profile_id"] * (MAX_OPERATORS // 2)) + " }}",
    }
    response = client.post("/api/v1/hooks", json=hook_with(real), headers=owner)
    assert response.status_code == 201, response.text
    long_text = client.post("/api/v1/hooks", json=hook_with({"t": "x" * (MAX_TEMPLATE_CHARS + 1)}), headers=owner)
    assert long_text.status_code == 422
    assert f"longer than {MAX_TEMPLATE_CHARS}" in long_text.json()["detail"][0]["msg"]


def test_a_concatenation_over_a_huge_input_is_refused_before_its_output_exists() -> None:
    """The issue's memory bomb: one ~ chain is one jinja2 chunk, so only a bound worked out beforehand helps."""
    values = compile_values({"bomb": "{{ " + " ~ ".join(["profile_id"] * 60) + " }}"},
                            max_output_chars=65_536, max_render_ms=50)
    huge = event(profile_id="p" * 1_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(TemplateRenderError) as info:
            values.render(huge, DictCatalog())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.key == "bomb"
    assert "refused before rendering" in info.value.message
    assert peak < 1_000_000  # the 60 MB output was never built, not even in part


def test_amplification_over_many_values_stops_at_the_event_budget() -> None:
    """200 values of {{campaign_name}} x6 with a long name: the event's custom_data budget refuses it."""
    limits = {"max_output_chars": 65_536, "max_render_ms": 50, "max_event_chars": 131_072,
              "max_batch_chars": 16 * 1024 * 1024}
    values = compile_values({f"v{i}": "{{campaign_name}}" * 6 for i in range(200)}, **limits)
    catalog = DictCatalog()
    catalog.put("campaigns", 973, "N" * 1000)  # the catalog's longest name
    tracemalloc.start()
    try:
        with pytest.raises(TemplateRenderError) as info:
            build_custom_data(event(), profile_fields=[], profile=None, values=values, catalog=catalog)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "budget of 131072 characters per event" in info.value.message
    assert peak < 2 * 131_072 + 200_000


def test_the_batch_budget_stops_a_routing_pass_that_would_render_too_much() -> None:
    values = compile_values({"name": "{{campaign_name}}"}, max_output_chars=2000, max_render_ms=50,
                            max_event_chars=2000, max_batch_chars=10_000)
    catalog = DictCatalog()
    catalog.put("campaigns", 973, "N" * 1000)
    budget = values.batch_budget()
    rendered = [build_custom_data(event(n), profile_fields=[], profile=None, values=values, catalog=catalog,
                                  budget=budget) for n in range(10)]
    assert len(rendered) == 10  # 10 x 1,000 characters: exactly the budget
    with pytest.raises(TemplateRenderError, match="per batch"):
        build_custom_data(event(11), profile_fields=[], profile=None, values=values, catalog=catalog, budget=budget)
    fresh = values.batch_budget()  # the next pass (the next batch) has its own budget
    assert build_custom_data(event(12), profile_fields=[], profile=None, values=values, catalog=catalog,
                             budget=fresh)["name"] == "N" * 1000


def test_profile_fields_count_toward_the_event_budget() -> None:
    values = compile_values({"id": "{{profile_id}}"}, max_output_chars=100, max_render_ms=50, max_event_chars=100)
    with pytest.raises(TemplateRenderError, match="per event"):
        build_custom_data(event(), profile_fields=["bio"], profile={"bio": "b" * 95}, values=values,
                          catalog=DictCatalog())


def test_catalog_names_and_profile_values_are_bounded_with_a_422_naming_the_field(
    client: TestClient, owner: dict[str, str]
) -> None:
    # The 10,000-character campaign name
    name = client.put("/api/v1/catalog/campaigns/973", json={"name": "N" * 10_000}, headers=owner)
    assert name.status_code == 422
    assert name.json()["detail"][0]["loc"] == ["body", "name"]
    subject = client.put("/api/v1/catalog/messages/17", json={"name": "m", "subject": "S" * 1001}, headers=owner)
    assert subject.json()["detail"][0]["loc"] == ["body", "subject"]
    assert client.put("/api/v1/catalog/campaigns/973", json={"name": "N" * 1000}, headers=owner).status_code == 200
    value = client.put("/api/v1/databases/111/profiles/p1", json={"fields": {"bio": "b" * 5000, "ok": "x"}},
                       headers=owner)
    assert value.status_code == 422
    assert value.json()["detail"][0]["loc"] == ["body", "fields", "bio"]
    bulk = client.post("/api/v1/databases/111/profiles", headers=owner, json={"profiles": [
        {"profile_id": "a", "fields": {"ok": "x"}}, {"profile_id": "b", "fields": {"bio": ["b" * 100] * 50}}]})
    assert bulk.status_code == 422
    assert bulk.json()["detail"][0]["loc"] == ["body", "profiles", 1, "fields", "bio"]
    whole = client.put("/api/v1/databases/111/profiles/p1", headers=owner,
                       json={"fields": {f"f{i}": "v" * 4000 for i in range(5)}})
    assert whole.status_code == 422
    assert whole.json()["detail"][0]["loc"] == ["body", "fields"]
    assert client.get("/api/v1/databases/111/profiles/p1", headers=owner).status_code == 404


def test_a_test_send_of_an_over_budget_event_fails_cleanly_and_sends_nothing(
    client: TestClient, owner: dict[str, str], connects: list[Any]
) -> None:
    client.put("/api/v1/catalog/campaigns/973", json={"name": "N" * 1000}, headers=owner)
    values = {f"v{i}": "{{campaign_name}}" * 6 for i in range(200)}
    hook_id = client.post("/api/v1/hooks", json=hook_with(values), headers=owner).json()["id"]
    result = client.post(f"/api/v1/hooks/{hook_id}/test", json={"event": event(1)}, headers=owner).json()
    assert result["ok"] is False
    assert "budget of 131072 characters per event" in result["error"]
    assert connects == []

"""The root main.json is the sample operators copy: it must pass its own check."""

from __future__ import annotations

import json
from pathlib import Path

from actionhooks.settings import Settings, load_settings

ROOT_MAIN_JSON = Path(__file__).resolve().parents[2] / "main.json"


def test_the_root_main_json_validates_and_every_value_in_it_is_applied() -> None:
    written = json.loads(ROOT_MAIN_JSON.read_text(encoding="utf-8"))

    settings = load_settings(ROOT_MAIN_JSON, environ={})

    applied = settings.model_dump(include=set(written))
    if isinstance(written.get("HOOK_RETRY_PERIOD_SEC"), int | float):
        written["HOOK_RETRY_PERIOD_SEC"] = [written["HOOK_RETRY_PERIOD_SEC"]]
    assert applied == written


def test_the_root_main_json_shows_at_least_every_key_of_the_contract() -> None:
    contract_keys = {
        "HOOK_RETRY_TIMES",
        "HOOK_RETRY_PERIOD_SEC",
        "HOOK_CONTENT_CLEANUP_HOURS",
        "HOOK_HTTP_TIMEOUT_SEC",
        "HOOK_ALLOW_PRIVATE_TARGETS",
        "DATABASE_URL",
        "BROKER_URL",
        "API_HOST",
        "API_PORT",
    }

    keys = set(json.loads(ROOT_MAIN_JSON.read_text(encoding="utf-8")))

    assert contract_keys <= keys
    assert keys <= set(Settings.model_fields)

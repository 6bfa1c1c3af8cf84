"""HookSpec rules and the masked view of secrets."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from actionhooks.delivery.config import MASK
from actionhooks.hooks.models import EXAMPLE_HOOK, FILTER_KINDS, HookSpec, masked_delivery, secret_paths


def spec(**changes: Any) -> HookSpec:
    return HookSpec.model_validate({**copy.deepcopy(EXAMPLE_HOOK), **changes})


def test_defaults_fill_every_filter_kind_and_a_signing_secret() -> None:
    hook = spec(filters={}, custom_data={})
    assert hook.filters.model_dump() == {**{kind: [] for kind in FILTER_KINDS}, "match": []}
    assert hook.custom_data.model_dump() == {"profile_fields": [], "values": {}}
    assert hook.delivery.signing_secret.startswith("whsec_")  # type: ignore[union-attr]
    assert hook.active is True
    assert hook.include_content is False


def test_repeated_actions_are_kept_once_in_order() -> None:
    assert spec(actions=["open", "click", "open"]).actions == ["open", "click"]


def test_the_contracts_extra_event_codes_are_accepted() -> None:
    assert spec(actions=["deliv_push", "undeliv_push", "pixel", "sub_status"]).actions[-1] == "sub_status"


@pytest.mark.parametrize(
    "case",
    [
        ({"actions": ["open", "clack"]}, ("actions", 1)),
        ({"filters": {"pixels": [True]}}, ("filters", "pixels", 0)),
        ({"filters": {"pixels": [1.5]}}, ("filters", "pixels", 0)),
        ({"filters": {"resources": [-1]}}, ("filters", "resources", 0)),
        ({"filters": {"sources": [1]}}, ("filters", "sources")),
        ({"database_id": True}, ("database_id",)),
        ({"custom_data": {"values": {"": "x"}}}, ("custom_data", "values", "", "[key]")),
        ({"custom_data": {"values": {"k": 5}}}, ("custom_data", "values", "k")),
    ],
)
def test_invalid_fields_are_named(case: tuple[dict[str, Any], tuple[Any, ...]]) -> None:
    change, loc = case
    with pytest.raises(ValidationError) as info:
        spec(**change)
    assert loc in [tuple(error["loc"]) for error in info.value.errors()]


def test_secret_paths_include_nested_auth_secrets() -> None:
    basic = {"type": "http", "url": "https://x.example", "auth": {"type": "basic", "username": "u", "password": "p"}}
    assert set(secret_paths(spec(delivery=basic).delivery)) == {("signing_secret",), ("auth", "password")}
    kafka = {"type": "kafka", "bootstrap_servers": "k:9092", "topic": "t"}
    assert list(secret_paths(spec(delivery=kafka).delivery)) == [("sasl_password",)]


def test_masked_delivery_hides_set_secrets_and_leaves_unset_ones_null() -> None:
    queue = {"type": "rabbitmq_queue", "host": "mq", "password": "s3cret"}
    assert masked_delivery(spec(delivery=queue).delivery)["password"] == MASK
    kafka = {"type": "kafka", "bootstrap_servers": "k:9092", "topic": "t"}
    assert masked_delivery(spec(delivery=kafka).delivery)["sasl_password"] is None
    masked = masked_delivery(spec().delivery)
    assert masked["auth"] == {"type": "bearer", "token": MASK}
    assert "crm-api-token" not in str(masked)

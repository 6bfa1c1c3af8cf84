"""HookService rules: merge patches, write-only secrets, templates compiled at save, clone."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from actionhooks.errors import HookValidationError
from actionhooks.hooks.models import EXAMPLE_HOOK, HookSpec
from actionhooks.hooks.service import HookService, merge_patch
from actionhooks.settings import Settings
from actionhooks.storage.db import make_engine, session_factory
from actionhooks.storage.hooks import SqlHookRepository
from actionhooks.storage.migrate import upgrade

KAFKA = {
    "type": "kafka", "bootstrap_servers": "127.0.0.1:9092", "topic": "events",
    "security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "kafka-pw",
}


@pytest.fixture
def service(tmp_path: Path) -> HookService:
    engine = make_engine(f"sqlite:///{tmp_path / 'hooks.db'}")
    upgrade(engine)
    return HookService(SqlHookRepository(session_factory(engine)), Settings())


def spec(**changes: Any) -> HookSpec:
    return HookSpec.model_validate({**copy.deepcopy(EXAMPLE_HOOK), **changes})


def errors(info: pytest.ExceptionInfo[HookValidationError]) -> list[tuple[Any, ...]]:
    return [loc for loc, _msg in info.value.errors]


def test_merge_patch_follows_rfc_7396() -> None:
    # Examples of RFC 7396 appendix A
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


def test_merge_patch_replaces_an_object_whose_type_changes() -> None:
    old = {"type": "basic", "username": "u", "password": "p"}
    assert merge_patch(old, {"type": "bearer", "token": "t"}) == {"type": "bearer", "token": "t"}
    assert merge_patch(old, {"type": "basic", "password": "q"}) == {"type": "basic", "username": "u", "password": "q"}


def test_patch_with_a_masked_kafka_password_keeps_it(service: HookService) -> None:
    hook = service.create(1, spec(delivery=KAFKA))
    patched = service.patch(1, hook.id, {"delivery": {"topic": "other", "sasl_password": "***"}})
    assert patched.spec.delivery.sasl_password == "kafka-pw"  # type: ignore[union-attr]
    assert patched.spec.delivery.topic == "other"  # type: ignore[union-attr]
    assert patched.version == 2


def test_replace_with_a_mask_for_a_secret_of_another_delivery_type_is_rejected(service: HookService) -> None:
    hook = service.create(1, spec())
    body = spec(delivery={**KAFKA, "sasl_password": "***"})
    with pytest.raises(HookValidationError) as info:
        service.replace(1, hook.id, body)
    assert errors(info) == [("body", "delivery", "sasl_password")]
    assert service.get(1, hook.id).version == 1


def test_templates_are_compiled_with_the_settings_bounds(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'small.db'}")
    upgrade(engine)
    small = HookService(SqlHookRepository(session_factory(engine)), Settings(TEMPLATE_MAX_OUTPUT_CHARS=10))
    with pytest.raises(HookValidationError) as info:
        small.create(1, spec(custom_data={"values": {"long": "x" * 11}}))
    assert errors(info) == [("body", "custom_data", "values", "long")]


def test_a_patch_that_breaks_a_template_names_the_key_and_changes_nothing(service: HookService) -> None:
    hook = service.create(1, spec())
    with pytest.raises(HookValidationError) as info:
        service.patch(1, hook.id, {"custom_data": {"values": {"bad": "{{ uuid | nosuchfilter }}"}}})
    assert errors(info) == [("body", "custom_data", "values", "bad")]
    assert service.get(1, hook.id).spec == hook.spec


def test_clone_is_stopped_named_copy_and_copies_no_secret(service: HookService) -> None:
    hook = service.create(1, spec())
    clone = service.clone(1, hook.id)
    assert (clone.spec.name, clone.spec.active) == ("CRM sync (copy)", False)
    assert clone.spec.delivery.url == hook.spec.delivery.url
    assert clone.spec.delivery.auth.type == "none"  # a bearer token cannot exist without its token
    assert clone.spec.delivery.signing_secret != hook.spec.delivery.signing_secret
    assert clone.id != hook.id


def test_activate_and_stop_only_switch_active(service: HookService) -> None:
    hook = service.create(1, spec())
    stopped = service.stop(1, hook.id)
    assert stopped.spec == hook.spec.model_copy(update={"active": False})
    assert service.activate(1, hook.id).spec == hook.spec
    assert service.get(1, hook.id).version == 3

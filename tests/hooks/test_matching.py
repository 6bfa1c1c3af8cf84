from __future__ import annotations

import itertools
from typing import Any

import pytest

from actionhooks.delivery.config import HttpDelivery, KafkaDelivery
from actionhooks.errors import HookValidationError
from actionhooks.hooks import matching
from actionhooks.hooks.matching import FILTER_FIELDS, CompiledHook, HookIndex, compile_hook
from actionhooks.settings import Settings
from actionhooks.templating import DictCatalog
from tests.support.hammer import hammer

SETTINGS = Settings()


def row(hook_id: int = 1, **changes: Any) -> dict[str, Any]:
    """A stored hook row of account 23 capturing clicks everywhere, as the storage layer hands it over."""
    base: dict[str, Any] = {
        "id": hook_id, "account_id": 23, "version": 1, "active": True, "name": f"hook {hook_id}",
        "database_id": None, "actions": ["click"], "filters": {},
        "custom_data": {"profile_fields": ["email"], "values": {"id": "{{uuid}}", "c": "{{campaign_name}}"}},
        "include_content": False, "delivery": {"type": "http", "url": "https://example.com/hook"},
    }
    return {**base, **changes}


def hook(hook_id: int = 1, **changes: Any) -> CompiledHook:
    return compile_hook(row(hook_id, **changes), SETTINGS)


def event(**changes: Any) -> dict[str, Any]:
    data = {"campaign_id": 973, "message_id": 17, "segment_id": 0, "resource_id": 3, "pixel_id": 9}
    base: dict[str, Any] = {
        "event_type": "click", "event_date": "2018-03-04T13:13:19.034315796Z", "account_id": 23,
        "is_test": False, "list_id": 111, "profile_id": "p1", "event_data": data,
    }
    base.update(changes)
    return base


def test_a_row_compiles_to_a_hook_with_everything_the_worker_needs() -> None:
    compiled = hook(7, version=3, database_id=111, actions=["click", "open"], filters={"campaigns": [973],
                    "messages": []}, include_content=True)
    assert (compiled.id, compiled.account_id, compiled.version, compiled.name) == (7, 23, 3, "hook 7")
    assert compiled.database_id == 111
    assert compiled.actions == frozenset({"click", "open"})
    assert compiled.filters == {"campaigns": frozenset({973})}  # an empty list restricts nothing
    assert compiled.profile_fields == ("email",)
    assert compiled.include_content is True
    assert isinstance(compiled.delivery, HttpDelivery)
    assert compiled.delivery.max_batch_size == 100
    assert compiled.values.render(event(), DictCatalog({("campaigns", 973): {"name": "BF"}}))["c"] == "BF"


def test_missing_filters_and_custom_data_mean_no_restriction_and_no_values() -> None:
    compiled = compile_hook({k: v for k, v in row().items() if k not in ("filters", "custom_data")}, SETTINGS)
    assert compiled.filters == {}
    assert compiled.profile_fields == ()
    assert len(compiled.values) == 0
    assert compiled.matches(event())


def test_every_bad_field_of_a_row_is_reported_together() -> None:
    bad = row(actions=["click", "clack"], filters={"campaigns": ["973"], "templates": [1]},
              custom_data={"profile_fields": [""], "values": {"ok": "{{uuid}}", "x": "{{ nope }}"}},
              delivery={"type": "http", "url": "not a url", "max_batch_size": 0})
    with pytest.raises(HookValidationError) as info:
        compile_hook(bad, SETTINGS)
    locs = [loc for loc, _ in info.value.errors]
    assert locs == [
        ("actions", 1), ("filters", "campaigns"), ("filters", "templates"), ("custom_data", "profile_fields"),
        ("custom_data", "values", "x"), ("delivery", "http", "url"), ("delivery", "http", "max_batch_size"),
    ]
    assert "unknown parameter 'nope'" in dict(info.value.errors)[("custom_data", "values", "x")]


def test_the_delivery_config_is_validated_by_type() -> None:
    compiled = hook(delivery={"type": "kafka", "bootstrap_servers": "127.0.0.1:9092", "topic": "events"})
    assert isinstance(compiled.delivery, KafkaDelivery)
    with pytest.raises(HookValidationError) as info:
        hook(delivery={"type": "smtp"})
    assert info.value.errors[0][0] == ("delivery",)


def test_a_hook_matches_an_event_of_its_account_and_actions() -> None:
    compiled = hook(actions=["click", "open"])
    assert compiled.matches(event())
    assert compiled.matches(event(event_type="open"))
    assert not compiled.matches(event(event_type="deliv"))


def test_another_accounts_hook_never_matches() -> None:
    assert not hook(account_id=24).matches(event())
    assert HookIndex([hook(account_id=24)]).candidates(event()) == []


def test_a_stopped_hook_never_matches() -> None:
    stopped = hook(active=False)
    assert not stopped.matches(event())
    assert HookIndex([stopped]).candidates(event()) == []


def test_a_hook_for_all_databases_matches_every_list_and_none() -> None:
    compiled = hook(database_id=None)
    assert compiled.matches(event(list_id=111))
    assert compiled.matches(event(list_id=5))
    assert compiled.matches({k: v for k, v in event().items() if k != "list_id"})


def test_a_hook_for_one_database_matches_only_that_lists_events() -> None:
    compiled = hook(database_id=111)
    assert compiled.matches(event(list_id=111))
    assert not compiled.matches(event(list_id=112))
    assert not compiled.matches({k: v for k, v in event().items() if k != "list_id"})


@pytest.mark.parametrize(("kind", "field"), sorted(FILTER_FIELDS.items()))
def test_each_filter_kind_restricts_on_its_event_data_field(kind: str, field: str) -> None:
    compiled = hook(filters={kind: [50, 51]})
    data = event()["event_data"]
    assert compiled.matches(event(event_data={**data, field: 50}))
    assert compiled.matches(event(event_data={**data, field: 51}))  # OR within a kind
    assert not compiled.matches(event(event_data={**data, field: 52}))
    assert not compiled.matches(event(event_data={k: v for k, v in data.items() if k != field}))
    assert not compiled.matches(event(event_data={**data, field: "50"}))
    assert not compiled.matches(event(event_data={**data, field: None}))


def test_filter_kinds_combine_with_and() -> None:
    compiled = hook(filters={"campaigns": [973, 974], "resources": [3], "messages": []})
    data = event()["event_data"]
    assert compiled.matches(event())
    assert compiled.matches(event(event_data={**data, "campaign_id": 974}))
    assert not compiled.matches(event(event_data={**data, "resource_id": 4}))
    assert not compiled.matches(event(event_data={**data, "campaign_id": 1}))


def test_a_hooks_repr_does_not_leak_delivery_secrets() -> None:
    compiled = hook(delivery={"type": "http", "url": "https://example.com/h", "signing_secret": "whsec_c2VjcmV0",
                              "auth": {"type": "bearer", "token": "tok-123"}})
    assert "whsec_c2VjcmV0" not in repr(compiled)
    assert "tok-123" not in repr(compiled)


def test_a_true_flag_is_never_taken_for_id_1() -> None:
    compiled = hook(filters={"campaigns": [1]}, database_id=1)
    assert not compiled.matches(event(list_id=True, event_data={"campaign_id": 1}))
    assert not compiled.matches(event(list_id=1, event_data={"campaign_id": True}))
    assert not hook(account_id=1).matches(event(account_id=True))
    assert compiled.matches(event(list_id=1, event_data={"campaign_id": 1}))
    assert HookIndex([compiled]).candidates(event(list_id=1, event_data={"campaign_id": True})) == []


def every_event() -> list[dict[str, Any]]:
    """A spread of events across accounts, types, databases and ids."""
    out = []
    for account in (23, 24):
        for event_type in ("click", "open", "deliv"):
            for list_id in (111, 112, None):
                for campaign in (973, 974, None):
                    for resource in (3, 4):
                        data = {"resource_id": resource, "message_id": 17}
                        if campaign is not None:
                            data["campaign_id"] = campaign
                        e = event(account_id=account, event_type=event_type, event_data=data)
                        if list_id is None:
                            del e["list_id"]
                        else:
                            e["list_id"] = list_id
                        out.append(e)
    return out


def some_hooks() -> list[CompiledHook]:
    return [
        hook(1),
        hook(2, actions=["click", "open"], database_id=111),
        hook(3, filters={"campaigns": [973]}),
        hook(4, filters={"campaigns": [973, 974], "resources": [4]}, database_id=112),
        hook(5, account_id=24, actions=["deliv"]),
        hook(6, active=False),
        hook(7, filters={"resources": [3], "campaigns": []}, actions=["open", "deliv"]),
        hook(8, filters={"messages": [17, 18], "campaigns": [974], "resources": [3, 4]}),
    ]


def test_the_index_returns_exactly_the_hooks_that_match_ordered_by_id() -> None:
    hooks = some_hooks()
    index = HookIndex(hooks)
    for e in every_event():
        assert index.candidates(e) == [h for h in hooks if h.matches(e)], e


def test_the_index_follows_replaced_stopped_and_removed_hooks() -> None:
    before = HookIndex(some_hooks())
    clicked = event()
    assert [h.id for h in before.candidates(clicked)] == [1, 2, 3]
    # hook 3 is edited to another campaign, hook 1 is stopped, hook 2 is deleted, hook 6 is activated
    index = before.changed(put=[hook(3, version=2, filters={"campaigns": [974]}), hook(1, active=False)], drop=[2])
    index = index.changed(put=[hook(6)], drop=[2])  # removing twice is harmless
    assert [h.id for h in index.candidates(clicked)] == [6]
    assert 1 not in index
    assert len(index) == 6
    # the old index is untouched: a reader still holding it sees it whole
    assert [h.id for h in before.candidates(clicked)] == [1, 2, 3]
    assert len(before) == 7
    # the edited hook now matches its new campaign, in its new version
    moved = index.candidates(event(event_data={"campaign_id": 974, "resource_id": 3}))
    assert [(h.id, h.version) for h in moved] == [(3, 2), (6, 1)]


def test_removing_every_hook_leaves_an_empty_index() -> None:
    index = HookIndex(some_hooks())
    for h in some_hooks():
        index = index.changed(drop=[h.id])
    assert len(index) == 0
    assert index._buckets == {}
    assert all(index.candidates(e) == [] for e in every_event())


def test_only_hooks_that_can_match_are_examined(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given 10,000 hooks of one account for clicks, each on its own campaign or database, or other types
    hooks = [hook(i, filters={"campaigns": [i]}) for i in range(1, 4001)]
    hooks += [hook(i, database_id=i) for i in range(4001, 7001)]
    hooks += [hook(i, actions=["open"]) for i in range(7001, 10_001)]
    index = HookIndex(hooks)
    examined: list[int] = []
    real = CompiledHook.matches
    monkeypatch.setattr(CompiledHook, "matches", lambda self, e: examined.append(self.id) or real(self, e))
    # When a click on campaign 5 in database 5000 arrives
    found = index.candidates(event(list_id=5000, event_data={"campaign_id": 5}))
    # Then only the two hooks that match are looked at
    assert [h.id for h in found] == [5, 5000]
    assert sorted(examined) == [5, 5000]
    assert matching.HookIndex is HookIndex


def test_readers_never_see_an_index_half_changed_while_another_thread_swaps_it() -> None:
    # Given an index of 200 hooks for clicks on campaign 973, swapped by a writer thread between
    # "hooks 0-199 at version 1" and "even hooks stopped, odd hooks at version 2" as fast as it can
    clicked = event()
    first = [hook(i, filters={"campaigns": [973, 1000 + i]}) for i in range(200)]
    second = [hook(i, version=2, active=i % 2 == 1, filters={"campaigns": [973, 2000 + i]}) for i in range(200)]
    allowed = {
        tuple((h.id, h.version) for h in first),
        tuple((h.id, h.version) for h in second if h.active),
    }
    current = {"index": HookIndex(first)}
    states = itertools.cycle([second, first])

    def swap() -> None:
        current["index"] = current["index"].changed(put=next(states))

    def read() -> str | None:
        seen = tuple((h.id, h.version) for h in current["index"].candidates(clicked))
        return None if seen in allowed else f"a mixed or duplicated result of {len(seen)} hooks"

    # When readers match against 200 swaps, then every read saw one whole index: no error, no hook
    # twice, no mix of two states
    assert hammer(swap, read, writes=200, readers=3) == []

"""Payload filters (`filters.match`): every op, the bounds checked at save, and the index keyed by eq/in."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from actionhooks.errors import HookValidationError
from actionhooks.hooks.matching import HookIndex, compile_hook
from actionhooks.hooks.models import MATCH_LIMITS, Filters
from actionhooks.settings import Settings

SETTINGS = Settings()


def row(hook_id: int, *conditions: dict[str, Any], **filters: Any) -> dict[str, Any]:
    return {
        "id": hook_id, "account_id": 23, "version": 1, "active": True, "name": f"hook {hook_id}",
        "database_id": None, "actions": ["click"], "filters": {**filters, "match": list(conditions)},
        "custom_data": {}, "include_content": False, "delivery": {"type": "http", "url": "https://example.com/h"},
    }


def event(**data: Any) -> dict[str, Any]:
    return {
        "event_type": "click", "event_date": "2018-03-04T13:13:19Z", "account_id": 23, "list_id": 111,
        "profile_id": "p1", "is_test": False,
        "event_data": {"campaign_id": 973, "params": {"plan": "pro", "seats": 12, "tags": ["vip", 7, True]}, **data},
    }


def matches(condition: dict[str, Any], ev: dict[str, Any] | None = None) -> bool:
    hook = compile_hook(row(1, condition), SETTINGS)
    ev = ev or event()
    assert hook.matches(ev) == bool(HookIndex([hook]).candidates(ev)), "index and matcher must agree"
    return hook.matches(ev)


def c(path: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"path": path, "op": op, "value": value, **extra}


PLAN = "event_data.params.plan"
SEATS = "event_data.params.seats"
TAGS = "event_data.params.tags"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (c(PLAN, "eq", "pro"), True),
        (c(PLAN, "eq", "free"), False),
        (c(SEATS, "eq", 12), True),
        (c(SEATS, "eq", 12.0), True),  # JSON numbers: 12 == 12.0
        (c(SEATS, "eq", "12"), False),  # a string never equals a number
        (c("event_data.params.tags.2", "eq", 1), False),  # true is not 1
        (c("event_data.params.tags.2", "eq", True), True),  # a decimal segment indexes a list
        (c("event_data.params.tags.9", "eq", True), False),
        (c("event_data.params.missing", "eq", None), False),  # missing is not null
        (c(PLAN, "ne", "free"), True),
        (c(PLAN, "ne", "pro"), False),
        (c("event_data.params.missing", "ne", "pro"), True),
        (c(PLAN, "in", ["basic", "pro"]), True),
        (c(PLAN, "in", ["basic", "free"]), False),
        (c(SEATS, "in", ["12", 13]), False),
        (c(PLAN, "nin", ["basic", "free"]), True),
        (c(PLAN, "nin", ["pro"]), False),
        (c("event_data.nothing", "nin", ["pro"]), True),
        (c(PLAN, "exists", True), True),
        ({"path": PLAN, "op": "exists"}, True),  # value defaults to true
        (c("event_data.params.plan.deeper", "exists", True), False),
        (c("event_data.nothing", "exists", False), True),
        (c(SEATS, "gt", 11), True),
        (c(SEATS, "gt", 12), False),
        (c(SEATS, "gte", 12), True),
        (c(SEATS, "lt", 12.5), True),
        (c(SEATS, "lte", 11), False),
        (c(PLAN, "gt", "basic"), True),  # strings compare with strings
        (c(PLAN, "gt", 1), False),  # a string is not comparable with a number
        (c(SEATS, "lt", "z"), False),
        (c("event_data.nothing", "lt", 5), False),
        (c(PLAN, "prefix", "pr"), True),
        (c(PLAN, "prefix", "ro"), False),
        (c(SEATS, "prefix", "1"), False),  # prefix is for strings only
        (c(PLAN, "contains", "r"), True),
        (c(PLAN, "contains", "x"), False),
        (c(TAGS, "contains", "vip"), True),
        (c(TAGS, "contains", 7), True),
        (c(TAGS, "contains", 1), False),  # the list holds true, which is not 1
        (c(TAGS, "contains", "vi"), False),  # element equality in a list, not substring
        (c("event_data.campaign_id", "eq", 973), True),
        (c("event_type", "eq", "click"), True),
    ],
)
def test_each_op_on_a_field_of_the_event(condition: dict[str, Any], expected: bool) -> None:
    assert matches(condition) is expected


def test_all_conditions_must_hold_and_id_filters_still_apply() -> None:
    both = [c(PLAN, "eq", "pro"), c(SEATS, "gte", 10)]
    assert compile_hook(row(1, *both), SETTINGS).matches(event())
    assert not compile_hook(row(1, *both, c(SEATS, "gt", 100)), SETTINGS).matches(event())
    assert not compile_hook(row(1, *both, campaigns=[1]), SETTINGS).matches(event())
    assert compile_hook(row(1, *both, campaigns=[973]), SETTINGS).matches(event())


def test_hostile_event_shapes_never_raise() -> None:
    hook = compile_hook(row(1, c(PLAN, "eq", "pro"), c(TAGS, "contains", "x"), c(SEATS, "gt", 1)), SETTINGS)
    for params in (None, "pro", 5, [], [[1]], {"plan": {"a": 1}, "tags": "xx", "seats": [1]}, {"plan": ["pro"]}):
        ev = event(params=params)
        assert hook.matches(ev) is False
        assert HookIndex([hook]).candidates(ev) == []
    assert not hook.matches({"account_id": 23, "event_type": "click", "event_data": []})


def test_the_index_files_a_hook_under_its_eq_or_in_values() -> None:
    hooks = [compile_hook(row(i, c(PLAN, "eq", f"plan-{i}")), SETTINGS) for i in range(1000)]
    hooks.append(compile_hook(row(1000, c(PLAN, "in", ["plan-7", "plan-8"])), SETTINGS))
    hooks.append(compile_hook(row(1001, c(SEATS, "gt", 0)), SETTINGS))  # not indexable: scanned
    index = HookIndex(hooks)
    assert [h.id for h in index.candidates(event(params={"plan": "plan-7", "seats": 1}))] == [7, 1000, 1001]
    assert [h.id for h in index.candidates(event(params={"plan": "plan-999"}))] == [999]
    assert index.candidates(event(params={"plan": 7})) == []
    by_kind = index._buckets[(23, "click")][None]
    assert len(by_kind[("event_data", "params", "plan")]) == 1000  # one slot per value, not a scan


# Hostile input at save: each is refused with a loc naming filters.match.<index>.
LONG = "x" * (MATCH_LIMITS["value_chars"] + 1)
HOSTILE: list[tuple[Any, tuple[Any, ...]]] = [
    (c(PLAN, "eq", LONG), ("match", 1)),
    (c(PLAN, "in", list(range(MATCH_LIMITS["list_values"] + 1))), ("match", 1)),
    (c(PLAN, "in", ["a", LONG]), ("match", 1)),
    (c(PLAN, "in", [["nested"]]), ("match", 1)),
    (c(PLAN, "in", []), ("match", 1)),
    (c(PLAN, "in", "pro"), ("match", 1)),
    (c(PLAN, "eq", ["pro"]), ("match", 1)),
    (c(PLAN, "eq", {"$gt": 1}), ("match", 1)),
    (c(".".join(["a"] * (MATCH_LIMITS["path_depth"] + 1)), "eq", 1), ("match", 1, "path")),
    (c("a" * (MATCH_LIMITS["path_chars"] + 1), "eq", 1), ("match", 1, "path")),
    (c("a..b", "eq", 1), ("match", 1, "path")),
    (c("", "eq", 1), ("match", 1, "path")),
    (c("a\nb", "eq", 1), ("match", 1, "path")),
    (c(5, "eq", 1), ("match", 1, "path")),
    (c(PLAN, "regex", ".*"), ("match", 1, "op")),
    (c(PLAN, "gt", True), ("match", 1)),
    (c(PLAN, "eq", 2**64), ("match", 1)),
    (c(PLAN, "in", [1, float("nan")]), ("match", 1)),
    (c(PLAN, "lt", None), ("match", 1)),
    (c(PLAN, "exists", "yes"), ("match", 1)),
    (c(PLAN, "prefix", ""), ("match", 1)),
    (c(PLAN, "prefix", 5), ("match", 1)),
    (c(PLAN, "contains", None), ("match", 1)),
    ({"path": PLAN, "op": "eq", "value": 1, "extra": 1}, ("match", 1, "extra")),
    ("not an object", ("match", 1)),
]


@pytest.mark.parametrize(("bad", "loc"), HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_a_bad_condition_is_refused_naming_its_index(bad: Any, loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        Filters.model_validate({"match": [c(PLAN, "eq", "pro"), bad]})
    assert any(error["loc"][: len(loc)] == loc for error in caught.value.errors()), caught.value.errors()


def test_too_many_conditions_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        Filters.model_validate({"match": [c(PLAN, "eq", "pro")] * (MATCH_LIMITS["conditions"] + 1)})
    assert caught.value.errors()[0]["loc"] == ("match",)


def test_a_stored_row_with_a_bad_condition_fails_to_compile_naming_it() -> None:
    with pytest.raises(HookValidationError) as caught:
        compile_hook(row(1, c(PLAN, "eq", "pro"), c(PLAN, "gt", None)), SETTINGS)
    assert caught.value.errors[0][0][:3] == ("filters", "match", 1)

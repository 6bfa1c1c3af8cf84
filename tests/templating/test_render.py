from __future__ import annotations

from typing import Any

import pytest

from actionhooks.errors import TemplateRenderError, TemplateSyntaxError
from actionhooks.templating import CompiledValues, DictCatalog, build_custom_data, compile_values
from actionhooks.templating import render as render_module


def compile_(values: dict[str, Any], *, max_output_chars: int = 1000, max_render_ms: float = 100) -> CompiledValues:
    return compile_values(values, max_output_chars=max_output_chars, max_render_ms=max_render_ms)


def syntax_error(values: dict[str, Any], **limits: Any) -> TemplateSyntaxError:
    with pytest.raises(TemplateSyntaxError) as info:
        compile_(values, **limits)
    return info.value


def test_the_contract_example_hook_renders_as_documented(event: dict[str, Any], catalog: DictCatalog) -> None:
    values = compile_({"id": "{{uuid}}", "eventTimeUnix": "{{event_date_unix}}", "cname": "{{campaign_name}}",
                       "eventTime": "{{event_date_ymd}}"})
    out = values.render(event, catalog)
    assert out["eventTimeUnix"] == "1520169199"
    assert out["cname"] == "Black Friday"
    assert out["eventTime"] == "2018-03-04"
    assert len(out["id"]) == 36
    assert list(out) == ["id", "eventTimeUnix", "cname", "eventTime"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{uuid}}", None),
        ("{{ event_date_unix }}", "1520169199"),
        ("{{-event_type-}}", "click"),
        ("constant text", "constant text"),
        ("", ""),
        ("line\n", "line\n"),
        ("{% raw %}{{uuid}}{% endraw %}", "{{uuid}}"),
        ("{# note #}p-{{profile_id}}/{{list_id}}", "p-abcdefgh12345678/111"),
    ],
)
def test_plain_parameters_and_constants_render_without_jinja2(
    event: dict[str, Any], catalog: DictCatalog, monkeypatch: pytest.MonkeyPatch, source: str, expected: str | None
) -> None:
    values = compile_({"v": source})

    def no_jinja(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("jinja2 was used")

    monkeypatch.setattr(render_module, "render_bounded", no_jinja)
    out = values.render(event, catalog)["v"]
    assert out == expected if expected is not None else len(out) == 36


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ campaign_name|upper }}", "BLACK FRIDAY"),
        ("{{ segment_name|lower }}-{{ resource_name|replace(' ', '_') }}", "vip-Main_site"),
        ("{% if campaign_name %}{{ campaign_name }}{% else %}none{% endif %}", "Black Friday"),
        ("{{ pixel if false else campaign_subid }}".replace("pixel", "'x'"), "bf-2024"),
        ("{{ 'yes' if list_id == '111' else 'no' }}", "yes"),
        ("{{ profile_id[:4] }}{{ profile_id[-2:] }}{{ profile_id[0] }}", "abcd78a"),
        ("{{ message_subject|truncate(9, true, '…', 0) }}", "Hello, f…"),
        ("{{ database_name ~ '/' ~ event_type }}", "Customers/click"),
        ("{{ message_name|length }}", "14"),
        ("{{ campaign_name|urlencode }}", "Black%20Friday"),
        ("{{ '' if campaign_name is none else 'set' }}", "set"),
        ("{{ 'in' if 'VIP' in segment_name and not (event_type != 'click') else 'out' }}", "in"),
        ("{{ resource_name|default('n/a', true) }}", "Main site"),
    ],
)
def test_real_templates_support_filters_conditions_and_slicing(
    event: dict[str, Any], catalog: DictCatalog, source: str, expected: str
) -> None:
    assert compile_({"v": source}).render(event, catalog) == {"v": expected}


def test_an_empty_name_can_be_replaced_with_a_default(event: dict[str, Any]) -> None:
    values = compile_({"v": "{{ campaign_name|default('unknown campaign', true) }}"})
    assert values.render(event, DictCatalog()) == {"v": "unknown campaign"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ uuid", "syntax error on line 1"),
        ("{% if uuid %}x", "syntax error"),
        ("{{ email }}", "unknown parameter 'email'"),
        ("ok {{ uuid }} {{ Uuid }}", "unknown parameter 'Uuid'"),
        ("{{ uuid|center(10) }}", "filter 'center' is not allowed"),
        ("{{ uuid is callable }}", "test 'callable' is not allowed"),
        ("{{ uuid|replace(*['a', 'b']) }}", "*args and **kwargs are not allowed"),
        ("{{ uuid['upper'] }}", "only integer indexes and slices"),
        ("{% block b %}x{% endblock %}", "Block is not allowed"),
        ("{% include 'x' %}", "Include is not allowed"),
        ("{% extends 'x' %}", "Extends is not allowed"),
        ("{% macro m() %}x{% endmacro %}", "macros are not allowed"),
        ("{% filter upper %}x{% endfilter %}", "FilterBlock is not allowed"),
        ("{% with a = 1 %}{% endwith %}", "With is not allowed"),
        ("{{ [uuid] }}", "List is not allowed"),
    ],
)
def test_a_bad_template_is_rejected_at_save_naming_its_key(source: str, message: str) -> None:
    error = syntax_error({"fine": "{{uuid}}", "bad": source, "also_fine": "x"})
    assert error.key == "bad"
    assert message in error.message


def test_the_first_bad_key_is_reported_in_the_order_of_the_values() -> None:
    assert syntax_error({"a": "{{ x }}", "b": "{{ y }}"}).key == "a"


def test_a_value_that_is_not_a_string_is_rejected() -> None:
    error = syntax_error({"n": 5})
    assert (error.key, error.message) == ("n", "must be a string, got int")


def test_a_template_longer_than_the_output_bound_is_rejected_at_save() -> None:
    error = syntax_error({"long": "x" * 101}, max_output_chars=100)
    assert (error.key, error.message) == ("long", "template longer than 100 characters")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ uuid.__class__ }}", "attribute access"),
        ("{{ ''.__class__.__mro__ }}", "attribute access"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "function calls are not allowed"),
        ("{{ uuid.__globals__ }}", "attribute access"),
        ("{{ campaign_name.upper() }}", "function calls are not allowed"),
        ("{{ campaign_name.upper }}", "attribute access"),
        ("{{ self }}", "unknown parameter 'self'"),
        ("{{ self._TemplateReference__context }}", "attribute access"),
        ("{{ cycler }}", "unknown parameter 'cycler'"),
        ("{{ cycler.__init__.__globals__.os }}", "attribute access"),
        ("{{ joiner() }}", "function calls are not allowed"),
        ("{% set ns = namespace() %}", "{% set %} is not allowed"),
        ("{{ namespace(a=1) }}", "function calls are not allowed"),
        ("{{ lipsum(10**6) }}", "function calls are not allowed"),
        ("{{ range }}", "unknown parameter 'range'"),
        ("{% for i in range(10**9) %}x{% endfor %}", "loops ({% for %}) are not allowed"),
        ("{% for c in campaign_name %}{% for d in campaign_name %}x{% endfor %}{% endfor %}", "loops"),
        ("{{ 'x' * 10**9 }}", "arithmetic is not allowed"),
        ("{{ 10**10**10 }}", "arithmetic is not allowed"),
        ("{{ uuid + uuid }}", "arithmetic is not allowed"),
        ("{{ '%s' % uuid }}", "arithmetic is not allowed"),
        ("{{ uuid|attr('__class__') }}", "filter 'attr' is not allowed"),
        ("{{ uuid|map('upper')|join }}", "filter 'join' is not allowed"),
        ("{{ uuid|map('upper') }}", "filter 'map' is not allowed"),
        ("{{ '{0.__class__}'|format(uuid) }}", "filter 'format' is not allowed"),
        ("{{ uuid|replace('-', uuid, **{'count': 1}) }}", "*args and **kwargs are not allowed"),
        ("{{ uuid['__class__'] }}", "only integer indexes and slices"),
        ("{{ config }}", "unknown parameter 'config'"),
        ("{{ loop }}", "unknown parameter 'loop'"),
    ],
)
def test_sandbox_escape_attempts_are_rejected_at_save(source: str, message: str) -> None:
    error = syntax_error({"evil": source})
    assert error.key == "evil"
    assert message in error.message


def test_a_plain_parameter_longer_than_the_bound_fails_at_render(event: dict[str, Any]) -> None:
    catalog = DictCatalog()
    catalog.put("campaigns", 973, "N" * 101)
    values = compile_({"cname": "{{campaign_name}}"}, max_output_chars=100)
    with pytest.raises(TemplateRenderError) as info:
        values.render(event, catalog)
    assert (info.value.key, info.value.message) == ("cname", "output longer than 100 characters")


def test_a_plain_value_over_the_event_budget_fails_naming_it_and_spends_no_batch_budget(
    event: dict[str, Any],
) -> None:
    catalog = DictCatalog()
    catalog.put("campaigns", 973, "N" * 60)
    values = compile_values({"id": "{{profile_id}}", "cname": "{{campaign_name}}", "again": "x{{campaign_name}}"},
                            max_output_chars=100, max_render_ms=100, max_event_chars=120, max_batch_chars=1000)
    budget = values.batch_budget()
    with pytest.raises(TemplateRenderError) as info:
        values.render(event, catalog, budget)
    assert (info.value.key, info.value.message) == ("again", "custom_data over the budget of 120 characters per event")
    assert budget.left == 1000
    fits = values.render(event, catalog, budget, spent=-20)  # 140 left of the event budget: 137 fit
    assert budget.left == 1000 + 20 - sum(map(len, fits.values()))


def test_only_the_catalog_kinds_the_values_read_are_named() -> None:
    assert compile_({"id": "{{uuid}}", "p": "p-{{profile_id}}"}).catalog_kinds == frozenset()
    both = compile_({"c": "{{campaign_subid}}", "m": "{{ message_subject|upper }}", "d": "db {{database_name}}"})
    assert both.catalog_kinds == {"campaigns", "messages", "databases"}


def test_a_template_output_longer_than_the_bound_fails_at_render(event: dict[str, Any], catalog: DictCatalog) -> None:
    values = compile_({"twice": "{{ uuid ~ uuid }}"}, max_output_chars=40)
    with pytest.raises(TemplateRenderError) as info:
        values.render(event, catalog)
    assert info.value.key == "twice"
    assert "longer than 40 characters" in info.value.message


def test_chained_replaces_cannot_build_a_huge_string(event: dict[str, Any], catalog: DictCatalog) -> None:
    # Each replace multiplies the length by ~5: unbounded, 12 of them would need gigabytes
    source = "{{ uuid" + "|replace('-', uuid)" * 12 + " }}"
    values = compile_({"bomb": source}, max_output_chars=65_536)
    with pytest.raises(TemplateRenderError) as info:
        values.render(event, catalog)
    assert info.value.key == "bomb"
    assert "replace would produce more than 65536 characters" in info.value.message


def test_a_render_slower_than_the_time_bound_fails(event: dict[str, Any], catalog: DictCatalog) -> None:
    source = "{% if uuid %}{{ uuid|upper }}{% endif %}" * 50
    values = compile_({"slow": source}, max_output_chars=10_000, max_render_ms=1e-6)
    with pytest.raises(TemplateRenderError) as info:
        values.render(event, catalog)
    assert info.value.key == "slow"
    assert "took longer than" in info.value.message


def test_a_template_that_fails_on_the_events_values_fails_with_a_render_error(
    event: dict[str, Any], catalog: DictCatalog
) -> None:
    values = compile_({"cmp": "{% if list_id > 5 %}big{% endif %}"})
    with pytest.raises(TemplateRenderError) as info:
        values.render(event, catalog)
    assert info.value.key == "cmp"
    assert "TypeError" in info.value.message


def test_an_index_past_the_end_fails_with_a_render_error(event: dict[str, Any], catalog: DictCatalog) -> None:
    with pytest.raises(TemplateRenderError, match="has no element 99"):
        compile_({"i": "{{ profile_id[99] }}"}).render(event, catalog)


def test_custom_data_is_profile_fields_plus_rendered_values(event: dict[str, Any], catalog: DictCatalog) -> None:
    values = compile_({"cname": "{{campaign_name}}"})
    out = build_custom_data(
        event, profile_fields=["email", "_fname", "phone"], profile={"email": "a@example.org", "_fname": "Al"},
        values=values, catalog=catalog,
    )
    assert out == {"email": "a@example.org", "_fname": "Al", "phone": None, "cname": "Black Friday"}


def test_a_missing_profile_gives_null_fields(event: dict[str, Any], catalog: DictCatalog) -> None:
    out = build_custom_data(event, profile_fields=["email"], profile=None, values=compile_({}), catalog=catalog)
    assert out == {"email": None}


def test_the_events_own_custom_data_replaces_the_hooks_values(event: dict[str, Any], catalog: DictCatalog) -> None:
    # Given a value that would fail if it were rendered
    values = compile_({"big": "{{ uuid ~ uuid }}"}, max_output_chars=40)
    event = {**event, "custom_data": {"email": "from-platform@example.org", "extra": [1, 2]}}
    out = build_custom_data(event, profile_fields=["email", "_fname"], profile={"email": "profile@example.org",
                            "_fname": "Al"}, values=values, catalog=catalog)
    # Then the event's own custom_data is used (and wins over the profile field of the same name)
    assert out == {"email": "from-platform@example.org", "_fname": "Al", "extra": [1, 2]}


def test_a_value_wins_over_a_profile_field_of_the_same_name(event: dict[str, Any], catalog: DictCatalog) -> None:
    out = build_custom_data(event, profile_fields=["email"], profile={"email": "p@example.org"},
                            values=compile_({"email": "{{event_type}}"}), catalog=catalog)
    assert out == {"email": "click"}


def test_an_empty_event_custom_data_lets_the_hooks_values_render(event: dict[str, Any], catalog: DictCatalog) -> None:
    out = build_custom_data({**event, "custom_data": {}}, profile_fields=[], profile=None,
                            values=compile_({"t": "{{event_type}}"}), catalog=catalog)
    assert out == {"t": "click"}


def test_building_custom_data_leaves_the_captured_event_unchanged(
    event: dict[str, Any], catalog: DictCatalog
) -> None:
    event = {**event, "custom_data": {"k": "v"}}
    out = build_custom_data(event, profile_fields=["email"], profile=None, values=compile_({}), catalog=catalog)
    out["k"] = "changed"
    assert event["custom_data"] == {"k": "v"}

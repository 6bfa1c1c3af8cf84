"""The render-time layer on its own: even a template that skipped the save-time checks is harmless."""

from __future__ import annotations

import time

import jinja2
import pytest

from actionhooks.errors import TemplateRenderError
from actionhooks.templating.environment import render_bounded, sandbox


def run(source: str, *, max_chars: int = 1000, max_ms: float = 1000) -> str:
    template = sandbox(max_chars).from_string(source)
    return render_bounded(template, {"uuid": "0f0e-11"}, max_chars=max_chars, max_ms=max_ms)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ uuid.__class__ }}",
        "{{ uuid.__globals__ }}",
        "{{ uuid.format.__globals__ }}",
    ],
)
def test_python_internals_are_unreachable_at_render(source: str) -> None:
    with pytest.raises(TemplateRenderError, match=r"sandbox violation|UndefinedError"):
        run(source)


@pytest.mark.parametrize(
    "source",
    ["{{ cycler('a') }}", "{{ joiner() }}", "{% set ns = namespace(a=1) %}{{ ns }}", "{{ lipsum() }}",
     "{{ range(3) }}", "{{ dict(a=1) }}"],
)
def test_the_sandbox_has_no_globals(source: str) -> None:
    with pytest.raises(TemplateRenderError, match="UndefinedError"):
        run(source)


def test_a_huge_loop_does_not_hang_a_worker() -> None:
    start = time.perf_counter()
    with pytest.raises(TemplateRenderError):
        run("{% for i in range(10**9) %}x{% endfor %}")
    assert time.perf_counter() - start < 1


def test_a_loop_over_data_is_stopped_by_the_output_bound() -> None:
    with pytest.raises(TemplateRenderError, match="output longer than 100 characters"):
        run("{% for a in uuid %}{% for b in uuid %}{% for c in uuid %}xx{% endfor %}{% endfor %}{% endfor %}",
            max_chars=100)


def test_a_loop_over_data_is_stopped_by_the_time_bound() -> None:
    with pytest.raises(TemplateRenderError, match="took longer than"):
        run("{% for a in uuid %}{% for b in uuid %}{% for c in uuid %}{% endfor %}x{% endfor %}{% endfor %}",
            max_chars=10**6, max_ms=1e-6)


@pytest.mark.parametrize("source", ["{{ 'x' * 10**9 }}", "{{ 10**10**10 }}", "{{ 'a' + 'b' }}", "{{ '%s' % 1 }}"])
def test_arithmetic_is_refused_at_render_without_being_computed(source: str) -> None:
    start = time.perf_counter()
    with pytest.raises(TemplateRenderError, match="sandbox violation: operator"):
        run(source)
    assert time.perf_counter() - start < 1


def test_only_the_allowed_filters_exist() -> None:
    with pytest.raises(jinja2.TemplateAssertionError, match="No filter named 'attr'"):
        sandbox(1000).from_string("{{ uuid|attr('upper') }}")
    assert run("{{ uuid|upper }}") == "0F0E-11"

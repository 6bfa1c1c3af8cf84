"""Compile a hook's custom_data values once (at save and at load), render them per event.

A value made only of text and plain parameters ("{{uuid}}", "id-{{ profile_id }}", a constant) is
compiled to a tuple of parts and rendered by calling the parameter functions directly: most hooks
never touch jinja2 at event time. Anything else (filters, conditions, comparisons) is a jinja2
template run in the sandbox of environment.py under the size and time bounds.

Errors: `compile_values` raises TemplateSyntaxError for the first bad value (in the order of the
values mapping), with `key` = that custom_data values key; the API turns it into a 422 at
loc ("custom_data", "values", key). `render` raises TemplateRenderError with the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta, nodes

from actionhooks.errors import TemplateRenderError, TemplateSyntaxError
from actionhooks.templating.environment import check_template, render_bounded, sandbox
from actionhooks.templating.parameters import PARAMETERS, Catalog, EventContext

__all__ = ["CompiledValues", "build_custom_data", "compile_values"]

_Param = Callable[[EventContext], str]


@dataclass(frozen=True, slots=True)
class _Parts:
    """Text and parameters only: rendered without jinja2."""

    parts: tuple[str | _Param, ...]

    def render(self, ctx: EventContext, max_chars: int, max_ms: float) -> str:
        out = "".join(p if isinstance(p, str) else p(ctx) for p in self.parts)
        if len(out) > max_chars:
            raise TemplateRenderError(f"output longer than {max_chars} characters")
        return out


@dataclass(frozen=True, slots=True)
class _Jinja:
    """A real template; `names` are the parameters it reads (only those are computed per event)."""

    template: jinja2.Template
    names: tuple[str, ...]

    def render(self, ctx: EventContext, max_chars: int, max_ms: float) -> str:
        variables = {name: PARAMETERS[name](ctx) for name in self.names}
        return render_bounded(self.template, variables, max_chars=max_chars, max_ms=max_ms)


_Renderer = _Parts | _Jinja


class CompiledValues:
    """A hook's custom_data `values`, compiled; `render` gives the strings for one event."""

    __slots__ = ("_items", "max_output_chars", "max_render_ms", "sources")

    def __init__(
        self, sources: Mapping[str, str], items: Sequence[tuple[str, _Renderer]], max_output_chars: int,
        max_render_ms: float,
    ) -> None:
        self.sources = dict(sources)
        self._items = tuple(items)
        self.max_output_chars = max_output_chars
        self.max_render_ms = max_render_ms

    def __len__(self) -> int:
        return len(self._items)

    def render(self, event: Mapping[str, Any], catalog: Catalog) -> dict[str, str]:
        """The values for `event`; raises TemplateRenderError (with the key) when one breaks a bound."""
        ctx = EventContext(event, catalog)
        out: dict[str, str] = {}
        for key, renderer in self._items:
            try:
                out[key] = renderer.render(ctx, self.max_output_chars, self.max_render_ms)
            except TemplateRenderError as exc:
                raise TemplateRenderError(exc.message, key=key) from exc
        return out


def compile_values(
    values: Mapping[str, str], *, max_output_chars: int, max_render_ms: float
) -> CompiledValues:
    """Compile every value; TemplateSyntaxError(message, key=...) for the first one that is invalid."""
    env = sandbox(max_output_chars)
    items: list[tuple[str, _Renderer]] = []
    for key, source in values.items():
        if not isinstance(source, str):
            raise TemplateSyntaxError(f"must be a string, got {type(source).__name__}", key=key)
        if len(source) > max_output_chars:
            raise TemplateSyntaxError(f"template longer than {max_output_chars} characters", key=key)
        try:
            tree = check_template(source, PARAMETERS, env)
        except ValueError as exc:
            raise TemplateSyntaxError(str(exc), key=key) from None
        items.append((key, _parts(tree) or _jinja(env, tree)))
    return CompiledValues(values, items, max_output_chars, max_render_ms)


def _parts(tree: nodes.Template) -> _Parts | None:
    """The fast form when the template is only text and bare parameters, else None."""
    if not tree.body:
        return _Parts(())
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts: list[str | _Param] = []
    for node in tree.body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            parts.append(node.data)
        elif isinstance(node, nodes.Name):
            parts.append(PARAMETERS[node.name])
        else:
            return None
    return _Parts(tuple(parts))


def _jinja(env: jinja2.Environment, tree: nodes.Template) -> _Jinja:
    names = tuple(sorted(meta.find_undeclared_variables(tree)))
    return _Jinja(env.from_string(tree), names)


def build_custom_data(
    event: Mapping[str, Any],
    *,
    profile_fields: Sequence[str],
    profile: Mapping[str, Any] | None,
    values: CompiledValues,
    catalog: Catalog,
) -> dict[str, Any]:
    """custom_data of a delivered event (contract.md "The hook").

    The selected profile fields come first (None for each when there is no profile or no such
    field); then the event's own `custom_data` when it carries a non-empty one, else the hook's
    values rendered for the event. On a shared key the later source wins: a value the user wrote
    for this hook, or data the platform sent with the event, is more specific than a profile field.
    `profile` is the profile's fields mapping.
    """
    fields = profile if profile is not None else {}
    out: dict[str, Any] = {name: fields.get(name) for name in profile_fields}
    own = event.get("custom_data")
    out.update(own if own else values.render(event, catalog))
    return out

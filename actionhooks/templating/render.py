"""Compile a hook's custom_data values once (at save and at load), render them per event.

A value made only of text and plain parameters ("{{uuid}}", "id-{{ profile_id }}", a constant) is
compiled to a tuple of parts and rendered by calling the parameter functions directly: most hooks
never touch jinja2 at event time. Anything else (filters, conditions, comparisons) is a jinja2
template run in the sandbox of environment.py under the size and time bounds.

Errors: `compile_values` raises TemplateSyntaxError for the first bad value (in the order of the
values mapping), with `key` = that custom_data values key; the API turns it into a 422 at
loc ("custom_data", "values", key). `render` raises TemplateRenderError with the key.

Budgets (main.json): one value renders at most TEMPLATE_MAX_OUTPUT_CHARS characters, one event's
custom_data (profile fields and values together) at most TEMPLATE_MAX_EVENT_CHARS, and the events a
routing pass adds to one hook's batches at most TEMPLATE_MAX_BATCH_CHARS together (`RenderBudget`).
Each bound is checked before the output is built: the parameters are computed first (they are the
event's own strings or catalog names, bounded where they are accepted), then the value's size bound
(environment.SizeBound) over them is compared with what is left. An event that would pass a budget
raises TemplateRenderError; routing puts it in the hook's failed list (visible, replayable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import orjson
from jinja2 import meta, nodes

from actionhooks.errors import OutputTooLong, TemplateRenderError, TemplateSyntaxError
from actionhooks.settings import Settings
from actionhooks.templating.environment import SizeBound, check_template, render_bounded, sandbox, size_bound
from actionhooks.templating.parameters import CATALOG_PARAMETERS, PARAMETERS, Catalog, EventContext

__all__ = ["CompiledValues", "RenderBudget", "build_custom_data", "compile_values", "template_limits"]


def template_limits(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of compile_values for `settings` (API, worker and transports bound alike)."""
    return {
        "max_output_chars": settings.TEMPLATE_MAX_OUTPUT_CHARS,
        "max_render_ms": settings.TEMPLATE_MAX_RENDER_MS,
        "max_event_chars": settings.TEMPLATE_MAX_EVENT_CHARS,
        "max_batch_chars": settings.TEMPLATE_MAX_BATCH_CHARS,
    }


class RenderBudget:
    """What is left of TEMPLATE_MAX_BATCH_CHARS for the events one routing pass renders for one hook."""

    __slots__ = ("left", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.left = total

_Param = Callable[[EventContext], str]


@dataclass(frozen=True, slots=True)
class _Parts:
    """Text and parameters only: rendered without jinja2."""

    parts: tuple[str | _Param, ...]
    names: tuple[str, ...]  # the parameters among the parts

    def render(self, ctx: EventContext, max_chars: int, max_ms: float) -> str:
        pieces = [p if isinstance(p, str) else p(ctx) for p in self.parts]
        size = sum(map(len, pieces))
        if size > max_chars:  # measured before the join: the pieces are strings that exist already
            raise OutputTooLong(f"output longer than {max_chars} characters")
        return "".join(pieces)

    def lone(self) -> _Param | None:
        """The value as one call per event when it is one part: a parameter's own function (its result
        is the event's own string, a catalog name or a short computed one), or a constant."""
        if len(self.parts) != 1:
            return None
        only = self.parts[0]
        return (lambda _ctx: only) if isinstance(only, str) else only


@dataclass(frozen=True, slots=True)
class _Jinja:
    """A real template; `names` are the parameters it reads (only those are computed per event)."""

    template: jinja2.Template
    names: tuple[str, ...]
    bound: SizeBound

    def render(self, ctx: EventContext, max_chars: int, max_ms: float) -> str:
        variables = {name: PARAMETERS[name](ctx) for name in self.names}
        at_most = self.bound.at_most(variables)
        if at_most > max_chars:
            raise OutputTooLong(
                f"output longer than {max_chars} characters (up to {at_most} from this event; refused before rendering)"
            )
        return render_bounded(self.template, variables, max_chars=max_chars, max_ms=max_ms)


_Renderer = _Parts | _Jinja


class CompiledValues:
    """A hook's custom_data `values`, compiled; `render` gives the strings for one event.

    `catalog_kinds` are the catalog kinds the values read names from (none: no catalog look-up).
    """

    __slots__ = (
        "_items", "_plain", "catalog_kinds", "max_batch_chars", "max_event_chars", "max_output_chars",
        "max_render_ms", "sources",
    )

    def __init__(
        self, sources: Mapping[str, str], items: Sequence[tuple[str, _Renderer]], *, max_output_chars: int,
        max_render_ms: float, max_event_chars: int, max_batch_chars: int,
    ) -> None:
        self.sources = dict(sources)
        self._items = tuple(items)
        # Text and parameters only (the common case): rendered in one pass whose sizes are checked
        # together (see render); None when a value is a jinja2 template.
        self._plain = (
            tuple((key, renderer.lone(), renderer) for key, renderer in self._items if isinstance(renderer, _Parts))
            if all(isinstance(renderer, _Parts) for _, renderer in self._items) else None
        )
        self.catalog_kinds = frozenset(
            CATALOG_PARAMETERS[name] for _, renderer in self._items for name in renderer.names
            if name in CATALOG_PARAMETERS
        )
        self.max_output_chars = max_output_chars
        self.max_render_ms = max_render_ms
        self.max_event_chars = max_event_chars
        self.max_batch_chars = max_batch_chars

    def __len__(self) -> int:
        return len(self._items)

    def batch_budget(self) -> RenderBudget:
        """A fresh TEMPLATE_MAX_BATCH_CHARS budget, for one routing pass of this hook."""
        return RenderBudget(self.max_batch_chars)

    def render(
        self, event: Mapping[str, Any], catalog: Catalog, budget: RenderBudget | None = None, spent: int = 0
    ) -> dict[str, str]:
        """The values for `event`; raises TemplateRenderError (with the key) when one breaks a bound.

        `spent` characters of this event's custom_data exist already (its profile fields); `budget`
        is the batch's, charged with everything this event's custom_data holds once it fits.
        """
        ctx = EventContext(event, catalog)
        event_left = self.max_event_chars - spent
        batch_left = budget.left - spent if budget is not None else event_left
        if batch_left < 0:  # the profile fields alone do not fit in what is left of the batch's budget
            raise TemplateRenderError(self._over_batch())
        if self._plain is not None:
            # Text and parameters only: the bounds are checked on the running total, and a value that
            # breaks one falls to the value-by-value pass below, which names it (on the same context:
            # an event's {{uuid}} keeps its value). A value of several parts is never built past what
            # is left (_Parts.render measures its pieces first).
            room = min(event_left, batch_left)
            out: dict[str, str] = {}
            size = 0
            for key, lone, parts in self._plain:
                if lone is not None:
                    text = lone(ctx)
                    if len(text) > self.max_output_chars:
                        break
                else:
                    try:
                        text = parts.render(ctx, min(self.max_output_chars, room - size), self.max_render_ms)
                    except OutputTooLong:
                        break
                size += len(text)
                if size > room:
                    break
                out[key] = text
            else:
                if budget is not None:
                    budget.left = batch_left - size
                return out
        out = {}
        for key, renderer in self._items:
            limit = min(self.max_output_chars, event_left, batch_left)
            try:
                value = renderer.render(ctx, max(limit, 0), self.max_render_ms)
            except OutputTooLong as exc:
                raise TemplateRenderError(self._over(exc, limit, event_left, batch_left), key=key) from exc
            except TemplateRenderError as exc:
                raise TemplateRenderError(exc.message, key=key) from exc
            out[key] = value
            event_left -= len(value)
            batch_left -= len(value)
        if budget is not None:
            budget.left = batch_left
        return out

    def _over(self, exc: OutputTooLong, limit: int, event_left: int, batch_left: int) -> str:
        if limit == self.max_output_chars:
            return exc.message
        if limit == event_left:
            return f"custom_data over the budget of {self.max_event_chars} characters per event"
        return self._over_batch()

    def _over_batch(self) -> str:
        return f"custom_data over the budget of {self.max_batch_chars} characters per batch (TEMPLATE_MAX_BATCH_CHARS)"


def compile_values(
    values: Mapping[str, str],
    *,
    max_output_chars: int,
    max_render_ms: float,
    max_event_chars: int | None = None,
    max_batch_chars: int | None = None,
) -> CompiledValues:
    """Compile every value; TemplateSyntaxError(message, key=...) for the first one that is invalid.

    Without event and batch budgets (a Kafka key: one value) they are the value's own bound.
    """
    env = sandbox(max_output_chars)
    items: list[tuple[str, _Renderer]] = []
    for key, source in values.items():
        if not isinstance(source, str):
            raise TemplateSyntaxError(f"must be a string, got {type(source).__name__}", key=key)
        if len(source) > max_output_chars:
            raise TemplateSyntaxError(f"template longer than {max_output_chars} characters", key=key)
        try:
            tree = check_template(source, PARAMETERS, env)
            items.append((key, _parts(tree) or _jinja(env, tree, max_output_chars)))
        except ValueError as exc:
            raise TemplateSyntaxError(str(exc), key=key) from None
        except (RecursionError, SyntaxError, MemoryError):  # jinja2's code generator or Python's compiler
            raise TemplateSyntaxError("template too complex to compile", key=key) from None
    event = max_event_chars if max_event_chars is not None else max_output_chars
    batch = max_batch_chars if max_batch_chars is not None else event
    return CompiledValues(
        values, items, max_output_chars=max_output_chars, max_render_ms=max_render_ms, max_event_chars=event,
        max_batch_chars=batch,
    )


def _parts(tree: nodes.Template) -> _Parts | None:
    """The fast form when the template is only text and bare parameters, else None."""
    if not tree.body:
        return _Parts((), ())
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts: list[str | _Param] = []
    names: list[str] = []
    for node in tree.body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            parts.append(node.data)
        elif isinstance(node, nodes.Name):
            parts.append(PARAMETERS[node.name])
            names.append(node.name)
        else:
            return None
    return _Parts(tuple(parts), tuple(names))


def _jinja(env: jinja2.Environment, tree: nodes.Template, max_output_chars: int) -> _Jinja:
    names = tuple(sorted(meta.find_undeclared_variables(tree)))
    return _Jinja(env.from_string(tree), names, size_bound(tree, max_output_chars))


def build_custom_data(
    event: Mapping[str, Any],
    *,
    profile_fields: Sequence[str],
    profile: Mapping[str, Any] | None,
    values: CompiledValues,
    catalog: Catalog,
    budget: RenderBudget | None = None,
) -> dict[str, Any]:
    """custom_data of a delivered event (docs/wire-format.md, "What a hook adds: custom_data").

    The selected profile fields come first (None for each when there is no profile or no such
    field); then the event's own `custom_data` when it carries a non-empty one, else the hook's
    values rendered for the event. On a shared key the later source wins: a value the user wrote
    for this hook, or data the platform sent with the event, is more specific than a profile field.
    `profile` is the profile's fields mapping. The profile fields count toward the event's and the
    batch's budget (CompiledValues.render); an event's own custom_data was bounded when it was accepted.
    """
    own = event.get("custom_data")
    if not profile_fields and not own:  # values alone (the common case): their own fresh dict
        return values.render(event, catalog, budget)
    fields = profile if profile is not None else {}
    out: dict[str, Any] = {name: fields.get(name) for name in profile_fields}
    if own:  # what the platform sent, bounded with the rest of the event when it was accepted
        out.update(own)
        return out
    spent = _size(out.values()) if profile_fields else 0
    if spent > values.max_event_chars:
        raise TemplateRenderError(f"custom_data over the budget of {values.max_event_chars} characters per event")
    out.update(values.render(event, catalog, budget, spent))
    return out


def _size(items: Any) -> int:
    """Characters a group of custom_data values takes: a string's length, anything else's JSON."""
    return sum(len(v) if isinstance(v, str) else 0 if v is None else len(orjson.dumps(v)) for v in items)

"""The jinja2 sandbox custom_data templates run in, and the rules a template must pass at save.

Two layers, so that neither alone has to be perfect:

1. At save, `check_template` walks the parsed template and accepts only what a custom_data value
   needs: text, known parameters, `~` concatenation, comparisons, `if`/`else`, string indexing and
   slicing, and a short list of string filters and tests. Attribute access, calls, loops, `set`,
   macros, arithmetic and every global (`range`, `cycler`, `joiner`, `namespace`, `lipsum`, `dict`)
   are rejected with a message naming what was found.
2. At render, templates run in `ImmutableSandboxedEnvironment` with no globals, arithmetic
   operators intercepted, `replace` bounded, and output size and elapsed time checked between the
   chunks jinja2 yields (`render_bounded`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.filters import FILTERS
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.tests import TESTS

from actionhooks.errors import TemplateRenderError

__all__ = ["ALLOWED_FILTERS", "ALLOWED_TESTS", "check_template", "render_bounded", "sandbox"]

ALLOWED_FILTERS = frozenset(
    {
        "capitalize", "count", "d", "default", "first", "last", "length", "lower", "replace", "reverse",
        "string", "title", "trim", "truncate", "upper", "urlencode",
    }
)
ALLOWED_TESTS = frozenset(
    {"defined", "undefined", "none", "string", "number", "eq", "ne", "equalto", "in", "lower", "upper"}
)

_ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Const, nodes.Filter, nodes.Test,
    nodes.If, nodes.CondExpr, nodes.Compare, nodes.Operand, nodes.And, nodes.Or, nodes.Not, nodes.Concat,
    nodes.Getitem, nodes.Slice, nodes.Neg, nodes.Pos, nodes.Keyword,
)
_WHY_NOT: dict[type[nodes.Node], str] = {
    nodes.Getattr: "attribute access (x.y) is not allowed",
    nodes.Call: "function calls are not allowed",
    nodes.For: "loops ({% for %}) are not allowed",
    nodes.Assign: "{% set %} is not allowed",
    nodes.AssignBlock: "{% set %} is not allowed",
    nodes.Macro: "macros are not allowed",
    nodes.CallBlock: "{% call %} is not allowed",
    nodes.BinExpr: "arithmetic is not allowed (use ~ to join strings)",
}


def check_template(source: str, known: Mapping[str, object], env: jinja2.Environment) -> nodes.Template:
    """Parse `source` and apply the save-time rules; raises ValueError with a user-facing message."""
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"syntax error on line {exc.lineno}: {exc.message}") from None
    for node in tree.find_all(nodes.Node):
        _check_node(node, known)
    return tree


def _check_node(node: nodes.Node, known: Mapping[str, object]) -> None:
    if not isinstance(node, _ALLOWED_NODES):
        why = next((msg for kind, msg in _WHY_NOT.items() if isinstance(node, kind)), None)
        raise ValueError(why or f"{type(node).__name__} is not allowed in a custom_data value")
    if isinstance(node, nodes.Name) and node.name not in known:
        raise ValueError(f"unknown parameter {node.name!r}; known: {', '.join(sorted(known))}")
    if isinstance(node, nodes.Getitem) and not (isinstance(node.arg, nodes.Slice) or _is_int(node.arg)):
        # A string key would fall back to attribute lookup (x['upper']): only x[3], x[-4], x[a:b].
        raise ValueError("only integer indexes and slices are allowed in [...]")
    if isinstance(node, nodes.Filter | nodes.Test):
        allowed = ALLOWED_FILTERS if isinstance(node, nodes.Filter) else ALLOWED_TESTS
        what = "filter" if isinstance(node, nodes.Filter) else "test"
        if node.name not in allowed:
            raise ValueError(f"{what} {node.name!r} is not allowed; allowed: {', '.join(sorted(allowed))}")
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            raise ValueError(f"{what} {node.name!r}: *args and **kwargs are not allowed")


def _is_int(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Neg | nodes.Pos):
        node = node.node
    return isinstance(node, nodes.Const) and type(node.value) is int


def _bounded_replace(limit: int) -> Any:
    """`replace` that refuses to build a string over `limit` (chained replaces grow exponentially)."""

    def replace(s: object, old: object, new: object, count: int | None = None) -> str:
        text, old_s, new_s = str(s), str(old), str(new)
        hits = text.count(old_s) if old_s else len(text) + 1
        if count is not None and count >= 0:
            hits = min(hits, count)
        if len(text) + hits * (len(new_s) - len(old_s)) > limit:
            raise TemplateRenderError(f"replace would produce more than {limit} characters")
        return text.replace(old_s, new_s, -1 if count is None else count)

    return replace


class _Sandbox(ImmutableSandboxedEnvironment):
    # Constant folding of intercepted operators is skipped by jinja2, so `'x' * 10**9` cannot even
    # be evaluated at compile time; at render such operators go through call_binop and fail.
    intercepted_binops = frozenset({"*", "**", "+", "-", "/", "//", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        raise jinja2.sandbox.SecurityError(f"operator {operator!r} is not allowed")


@functools.lru_cache(maxsize=8)
def sandbox(max_output_chars: int) -> jinja2.Environment:
    """The sandboxed environment for one output bound (shared: environments are thread-safe to read)."""
    env = _Sandbox(autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.globals.clear()
    env.filters = {name: FILTERS[name] for name in ALLOWED_FILTERS}
    env.filters["replace"] = _bounded_replace(max_output_chars)
    env.tests = {name: TESTS[name] for name in ALLOWED_TESTS}
    return env


def render_bounded(
    template: jinja2.Template, variables: dict[str, str], *, max_chars: int, max_ms: float
) -> str:
    """Render, failing with TemplateRenderError once the output or the elapsed time passes its bound."""
    deadline = time.perf_counter() + max_ms / 1000
    size = 0
    chunks: list[str] = []
    try:
        for chunk in template.generate(variables):
            size += len(chunk)
            if size > max_chars:
                raise TemplateRenderError(f"output longer than {max_chars} characters")
            if time.perf_counter() > deadline:
                raise TemplateRenderError(f"rendering took longer than {max_ms} ms")
            chunks.append(chunk)
    except TemplateRenderError:
        raise
    except jinja2.sandbox.SecurityError as exc:
        raise TemplateRenderError(f"sandbox violation: {exc}") from exc
    except Exception as exc:  # a user template failing in any other way (e.g. comparing str with int)
        raise TemplateRenderError(f"{type(exc).__name__}: {exc}") from exc
    return "".join(chunks)

"""The jinja2 sandbox custom_data templates run in, and the rules a template must pass at save.

Two layers, so that neither alone has to be perfect:

1. At save, `check_template` bounds the source before jinja2's recursive parser and Python's
   compiler see it (MAX_TEMPLATE_CHARS characters, MAX_NESTING levels of brackets and blocks,
   MAX_OPERATORS operators: deeper input would raise RecursionError or SyntaxError inside them),
   then walks the parsed template and accepts only what a custom_data value needs: text, known
   parameters, `~` concatenation, comparisons, `if`/`else`, string indexing and slicing, and a
   short list of string filters and tests. Attribute access, calls, loops, `set`, macros,
   arithmetic and every global (`range`, `cycler`, `joiner`, `namespace`, `lipsum`, `dict`)
   are rejected with a message naming what was found.
2. At render, templates run in `ImmutableSandboxedEnvironment` with no globals, arithmetic
   operators intercepted, `replace` bounded, and output size and elapsed time checked between the
   chunks jinja2 yields (`render_bounded`). Before any of that, `SizeBound` (worked out at save from
   the tree) gives the most characters the template can produce from the event's actual inputs: a
   template that could pass its budget is refused before one byte of output is built, since one
   concatenation is one chunk and a chunk is only measured once it exists.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.filters import FILTERS
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.tests import TESTS

from actionhooks.errors import OutputTooLong, TemplateRenderError

__all__ = [
    "ALLOWED_FILTERS", "ALLOWED_TESTS", "MAX_NESTING", "MAX_OPERATORS", "MAX_TEMPLATE_CHARS", "SizeBound",
    "check_template", "render_bounded", "sandbox", "size_bound",
]

MAX_TEMPLATE_CHARS = 4096
"""Longest template source (a custom_data value, a Kafka key)."""
MAX_NESTING = 16
"""Deepest nesting of brackets, of {% if %} blocks, and of the parsed expression tree."""
MAX_OPERATORS = 64
"""Most operators in one template (~ | not and or if else is in, comparisons): a chain of them nests."""
_BLOCK_OPENERS = frozenset({"if", "for", "macro", "call", "filter", "block", "with", "autoescape", "trans", "raw"})
_WORD_OPERATORS = frozenset({"not", "and", "or", "if", "else", "is", "in"})
_BRACKETS = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}
_NOT_OPERATORS = frozenset({",", ":", "."})

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
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"template longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        _check_shape(env, source)
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"syntax error on line {exc.lineno}: {exc.message}") from None
    except (RecursionError, SyntaxError, MemoryError):  # a backstop: _check_shape should make it unreachable
        raise ValueError(f"template too complex (more than {MAX_NESTING} levels of nesting)") from None
    if _depth(tree) > MAX_NESTING + 8:  # Template > Output/If > … : a few levels are structure, not nesting
        raise ValueError(f"template nested more than {MAX_NESTING} levels deep")
    for node in tree.find_all(nodes.Node):
        _check_node(node, known)
    return tree


def _check_shape(env: jinja2.Environment, source: str) -> None:
    """Bracket and block depth and the operator count, from jinja2's (iterative) lexer alone."""
    brackets = blocks = operators = 0
    after_block_begin = False
    for _line, kind, value in env.lex(source):
        if kind == "whitespace":
            continue
        if kind == "operator":
            brackets += _BRACKETS.get(value, 0)
            operators += value not in _BRACKETS and value not in _NOT_OPERATORS
        elif kind == "name":
            operators += value in _WORD_OPERATORS and not after_block_begin
            if after_block_begin and value in _BLOCK_OPENERS:
                blocks += 1
            elif after_block_begin and value.startswith("end"):
                blocks -= 1
        after_block_begin = kind == "block_begin"
        if max(brackets, blocks) > MAX_NESTING:
            raise ValueError(f"template nested more than {MAX_NESTING} levels deep (brackets or blocks)")
        if operators > MAX_OPERATORS:
            raise ValueError(f"template has more than {MAX_OPERATORS} operators")


def _depth(tree: nodes.Node) -> int:
    """Height of the parsed tree, without recursion."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    return deepest


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
                raise OutputTooLong(f"output longer than {max_chars} characters")
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


# Most characters one input character can become through a filter: Unicode case mapping can triple
# a character ('ΐ'.upper() has three), urlencode writes up to four UTF-8 bytes as %XX each.
_GROWTH = {"upper": 3, "lower": 3, "capitalize": 3, "title": 3, "urlencode": 12}
_NUMBER_CHARS = 20  # length and count give a number
_BOOL_CHARS = 5  # a comparison or test gives True or False


@dataclass(frozen=True, slots=True)
class SizeBound:
    """A template's output has at most `const + sum(weight * len(value))` characters over the parameters it reads."""

    const: int
    weights: tuple[tuple[str, int], ...]

    def at_most(self, variables: Mapping[str, str]) -> int:
        return self.const + sum(weight * len(variables[name]) for name, weight in self.weights)


def size_bound(tree: nodes.Node, replace_limit: int) -> SizeBound:
    """The output bound of a checked template (`replace_limit` caps a `replace` whose arguments are not constants)."""
    const, weights = _bound(tree, replace_limit)
    return SizeBound(const, tuple(sorted(weights.items())))


def _bound(node: nodes.Node, limit: int) -> tuple[int, dict[str, int]]:
    # Recursion is safe here: check_template has bounded the tree's height.
    if isinstance(node, nodes.Name):
        return 0, {node.name: 1}
    if isinstance(node, nodes.TemplateData):
        return len(node.data), {}
    if isinstance(node, nodes.Const):
        return len(str(node.value)), {}
    if isinstance(node, nodes.Compare | nodes.Test | nodes.Not):
        return _BOOL_CHARS, {}
    if isinstance(node, nodes.Getitem):  # an index or a slice of a string is no longer than the string
        return _bound(node.node, limit)
    if isinstance(node, nodes.Filter):
        return _filter_bound(node, limit)
    return _sum([_bound(child, limit) for child in node.iter_child_nodes()])


def _filter_bound(node: nodes.Filter, limit: int) -> tuple[int, dict[str, int]]:
    if node.name in ("length", "count"):
        return _NUMBER_CHARS, {}
    const, weights = _bound(node.node, limit) if node.node is not None else (0, {})
    args = [_bound(arg, limit) for arg in (*node.args, *(kw.value for kw in node.kwargs))]
    factor = _GROWTH.get(node.name, 1)
    if node.name == "replace":
        consts = [a.value for a in node.args[:2] if isinstance(a, nodes.Const) and isinstance(a.value, str)]
        if len(consts) < 2 or node.kwargs:
            return limit, {}  # _bounded_replace refuses to build more than the limit
        old, new = consts
        factor = 1 + len(new) if not old else max(1, -(-len(new) // len(old)))
        return factor * const + len(new), {name: factor * w for name, w in weights.items()}
    scaled = (factor * const, {name: factor * w for name, w in weights.items()})
    return _sum([scaled, *args])  # default's and truncate's arguments may be part of the output


def _sum(parts: list[tuple[int, dict[str, int]]]) -> tuple[int, dict[str, int]]:
    const = 0
    weights: dict[str, int] = {}
    for part_const, part_weights in parts:
        const += part_const
        for name, weight in part_weights.items():
            weights[name] = weights.get(name, 0) + weight
    return const, weights

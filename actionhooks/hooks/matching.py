"""Which hooks an event goes to: compile a hook once, then match events against it cheaply.

Pure and I/O-free. `compile_hook` turns a stored hook row into a `CompiledHook`: the row is
validated by HookSpec (hooks/models.py, the one rule of what a hook is), then compiled from that
model (filters as frozensets, templates compiled by `compile_templates`, which the API's save
runs too). `HookIndex` finds the hooks an event can
match without looking at the others: it buckets active hooks by (account_id, event_type), then by
database (one id or "all"), then by one of their filters' values, so 10,000 hooks in an account of
which one matches cost about what one hook costs.

Matching rules (README, "What the engine does"): the event's account must be the hook's; its event_type
must be one of the hook's actions; `database_id` None means every database, else the event's
`list_id` must equal it; filter kinds combine with AND, values of one kind with OR, and an empty or
missing list does not restrict; every payload condition (`filters.match`) must hold too. A stopped
hook matches nothing.

Payload conditions are validated by the hook model (hooks/models.py MatchCondition) and compiled here
once into small closures. Values compare by JSON kind: a string never equals a number, `true` never
equals 1; `gt`/`gte`/`lt`/`lte` compare numbers with numbers and strings with strings, anything else
fails. A missing field fails every op except `ne`, `nin` and `exists: false`. A hook with an `eq` or
`in` condition is indexed by its value(s) like an id filter, so 10,000 such hooks cost about one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from actionhooks.errors import HookValidationError, TemplateSyntaxError
from actionhooks.events import ID_PATHS, OPERATIONAL_EVENTS
from actionhooks.hooks.models import FILTER_KINDS, HookSpec, MatchCondition
from actionhooks.settings import Settings
from actionhooks.templating import CompiledValues, compile_values, template_limits

__all__ = ["FILTER_FIELDS", "CompiledHook", "HookIndex", "compile_hook", "compile_templates"]

FILTER_FIELDS: dict[str, str] = {kind: ID_PATHS[kind][-1] for kind in FILTER_KINDS}
"""Filter kind -> the event_data field it restricts."""

_MISSING = object()
Predicate = Callable[[Mapping[str, Any]], bool]
_Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, eq=False)
class CompiledHook:
    """A hook ready for matching and rendering. `filters` holds only the kinds that restrict."""

    id: int
    account_id: int
    version: int
    active: bool
    name: str
    database_id: int | None
    actions: frozenset[str]
    filters: Mapping[str, frozenset[int]]
    conditions: tuple[Predicate, ...]
    # The index key of the most selective `eq`/`in` condition: (path segments, typed values).
    keyed: tuple[tuple[str, ...], frozenset[Hashable]] | None
    profile_fields: tuple[str, ...]
    values: CompiledValues
    include_content: bool
    delivery: Any = field(repr=False)  # one of the DeliveryConfig models; kept out of repr: it holds secrets

    def matches(self, event: Mapping[str, Any]) -> bool:
        if not self.active or _id(event.get("account_id")) != self.account_id:
            return False
        if event.get("event_type") not in self.actions:
            return False
        if self.database_id is not None and _id(event.get("list_id")) != self.database_id:
            return False
        if event.get("event_type") in OPERATIONAL_EVENTS and (event.get("event_data") or {}).get("hook_id") == self.id:
            return False  # a hook never hears about itself (a dead receiver would be told it is dead)
        if self.filters:
            data = event.get("event_data") or {}
            for kind, allowed in self.filters.items():
                if _id(data.get(FILTER_FIELDS[kind])) not in allowed:
                    return False
        return all(condition(event) for condition in self.conditions)


def _id(value: Any) -> int | None:
    # Only real ints can match: True would equal 1 and a list would not even hash.
    return value if type(value) is int else None


def _resolve(event: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at `path` in the event, or _MISSING; a decimal segment indexes a list."""
    node: Any = event
    for part in path:
        if isinstance(node, dict):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.isdecimal():
            index = int(part)
            node = node[index] if index < len(node) else _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return node
    return node


class _Constant:
    """JSON true, false and null as index keys: True must not equal 1, nor null a missing field."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_TRUE, _FALSE, _NULL = _Constant("true"), _Constant("false"), _Constant("null")


def _key(value: Any) -> Hashable | None:
    """A hashable key equal for equal JSON scalars of the same kind (1 == 1.0, True != 1); None otherwise.

    Strings and numbers are their own keys (a str never equals a number); the constants stand for
    true, false and null. Nothing is allocated: this runs for every event and indexed hook kind.
    """
    if value is None:
        return _NULL
    cls = type(value)
    if cls is str or cls is int or cls is float:
        return value
    if cls is bool:
        return _TRUE if value else _FALSE
    return None  # objects, lists (and subclasses of scalars, which JSON never makes) equal nothing


def _ordered(value: Any, bound: Any) -> bool:
    """Whether `value` is comparable with `bound` (both numbers, or both strings)."""
    if isinstance(bound, str):
        return isinstance(value, str)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compile_condition(condition: MatchCondition) -> Predicate:
    """A closure evaluating one validated condition on an event."""
    path, op, bound = tuple(condition.path.split(".")), condition.op, condition.value
    if op in ("eq", "ne", "in", "nin"):
        wanted = frozenset(_key(v) for v in (bound if isinstance(bound, list) else [bound]))
        inside = op in ("eq", "in")
        return lambda event: (_key(_resolve(event, path)) in wanted) is inside
    if op == "exists":
        return lambda event: (_resolve(event, path) is not _MISSING) is bound
    if op == "prefix":
        return lambda event: isinstance(value := _resolve(event, path), str) and value.startswith(bound)
    if op == "contains":
        key = _key(bound)

        def contains(event: Mapping[str, Any]) -> bool:
            value = _resolve(event, path)
            if isinstance(value, str):
                return isinstance(bound, str) and bound in value
            return isinstance(value, list) and any(_key(item) == key for item in value)

        return contains
    compare: Callable[[Any], bool] = {
        "gt": lambda v: v > bound,
        "gte": lambda v: v >= bound,
        "lt": lambda v: v < bound,
        "lte": lambda v: v <= bound,
    }[op]
    return lambda event: _ordered(value := _resolve(event, path), bound) and compare(value)


def _index_key(conditions: Sequence[MatchCondition]) -> tuple[tuple[str, ...], frozenset[Hashable]] | None:
    """The `eq`/`in` condition with the fewest values, as (path, keys), for the index; None if there is none."""
    keyed = [c for c in conditions if c.op in ("eq", "in")]
    if not keyed:
        return None
    best = min(keyed, key=lambda c: len(c.value) if isinstance(c.value, list) else 1)
    values = best.value if isinstance(best.value, list) else [best.value]
    return tuple(best.path.split(".")), frozenset(_key(v) for v in values)


def compile_hook(row: Mapping[str, Any], settings: Settings) -> CompiledHook:
    """Compile a stored hook row: its HookSpec fields, and the engine's `id`, `account_id`, `version`.

    HookSpec decides whether it is a hook, by the rules the API saved it with; its templates are
    compiled by `compile_templates`, as at save. HookValidationError names every bad field (loc, msg),
    in the order of the hook's fields.
    """
    try:
        spec = HookSpec.model_validate({name: row[name] for name in HookSpec.model_fields if name in row})
    except ValidationError as exc:
        errors = list(dict.fromkeys((_row_loc(err["loc"]), err["msg"]) for err in exc.errors()))
        custom_data = row.get("custom_data")
        values = custom_data.get("values") if isinstance(custom_data, Mapping) else None
        if isinstance(values, Mapping):  # the templates too, so every bad field is named at once
            errors += _template_errors(values, None, template_limits(settings))[1]
        raise HookValidationError(sorted(errors, key=_field_order)) from None
    conditions = spec.filters.match
    return CompiledHook(
        id=row["id"],
        account_id=row["account_id"],
        version=row.get("version", 1),
        active=spec.active,
        name=spec.name,
        database_id=spec.database_id,
        actions=frozenset(spec.actions),
        filters={kind: frozenset(ids) for kind in FILTER_KINDS if (ids := getattr(spec.filters, kind))},
        conditions=tuple(_compile_condition(c) for c in conditions),
        keyed=_index_key(conditions),
        profile_fields=tuple(spec.custom_data.profile_fields),
        values=compile_templates(spec, settings),
        include_content=spec.include_content,
        delivery=spec.delivery,
    )


def compile_templates(spec: HookSpec, settings: Settings) -> CompiledValues:
    """The hook's custom_data values compiled, its delivery's template fields (a Kafka key, a subject...)
    checked, under the settings' template limits; HookValidationError at ("custom_data", "values", key)
    or ("delivery", field) for the first bad template of each. The API (at save) and the worker (at
    load) both call this, so a hook that saves is a hook the worker can run."""
    values, errors = _template_errors(spec.custom_data.values, spec.delivery, template_limits(settings))
    if values is None or errors:
        raise HookValidationError(errors)
    return values


def _template_errors(
    values: Mapping[str, Any], delivery: Any, limits: Mapping[str, Any]
) -> tuple[CompiledValues | None, list[tuple[_Loc, str]]]:
    """The compiled values (None if one is bad) and the error of the first bad template of each field."""
    errors: list[tuple[_Loc, str]] = []
    compiled = None
    try:
        compiled = compile_values(values, **limits)
    except TemplateSyntaxError as exc:
        errors.append((("custom_data", "values", exc.key or ""), exc.message))
    for name in getattr(delivery, "TEMPLATE_FIELDS", ()):
        try:
            compile_values({name: getattr(delivery, name)}, **limits)
        except TemplateSyntaxError as exc:
            errors.append((("delivery", name), exc.message))
    return compiled, errors


_FIELD_ORDER = {name: i for i, name in enumerate(HookSpec.model_fields)}


def _field_order(error: tuple[_Loc, str]) -> int:
    """A stored row's errors in the order of the hook's fields (the order HookSpec reports them in)."""
    return _FIELD_ORDER.get(str(error[0][0]) if error[0] else "", len(_FIELD_ORDER))

# Lists of plain items (ids, field names) that an error names as a whole, not by the index of an item.
_WHOLE_LISTS = {*(("filters", kind) for kind in FILTER_KINDS), ("custom_data", "profile_fields")}


def _row_loc(loc: Sequence[str | int]) -> _Loc:
    """Where a HookSpec error is in a stored row: an id list or the profile field names as a whole."""
    head = tuple(loc[:2])
    return head if head in _WHOLE_LISTS else tuple(loc)


# (account_id, event_type) -> database_id|None -> filter kind|None -> id|None -> {hook id: hook}
_ByValue = dict[Hashable | None, dict[int, CompiledHook]]
_Bucket = dict[int | None, dict["_Kind", _ByValue]]


class HookIndex:
    """Active hooks arranged so an event only meets the hooks that can match it.

    Immutable once built: a change makes a new index (`changed`) that shares every bucket it does
    not touch with this one, and the hook cache swaps its reference in one assignment. A router
    matching on another thread therefore never sees an index half-changed (no lock on the read path).
    """

    __slots__ = ("_buckets", "_hooks")

    def __init__(self, hooks: Iterable[CompiledHook] = ()) -> None:
        self._buckets: dict[tuple[int, str], _Bucket] = {}
        self._hooks: dict[int, CompiledHook] = {}
        owned: _Owned = {id(self._buckets): self._buckets}
        for hook in hooks:
            self._put(hook, owned)

    def __len__(self) -> int:
        return len(self._hooks)

    def __contains__(self, hook_id: object) -> bool:
        return hook_id in self._hooks

    def candidates(self, event: Mapping[str, Any]) -> list[CompiledHook]:
        """Exactly the hooks that match `event`, ordered by hook id."""
        buckets = self._buckets.get((event.get("account_id"), event.get("event_type")))  # type: ignore[arg-type]
        if not buckets:
            return []
        list_id = _id(event.get("list_id"))
        data = event.get("event_data") or {}
        found: list[CompiledHook] = []
        for database in (None, list_id) if list_id is not None else (None,):
            by_kind = buckets.get(database)
            if not by_kind:
                continue
            for kind, by_value in by_kind.items():
                hooks = by_value.get(_slot_value(kind, event, data))
                if hooks:
                    found += [hook for hook in hooks.values() if hook.matches(event)]
        if len(found) > 1:
            found.sort(key=lambda hook: hook.id)
        return found

    def changed(self, put: Iterable[CompiledHook] = (), drop: Iterable[int] = ()) -> HookIndex:
        """A new index with `put` hooks added or in place of those with their ids (a stopped one is only
        removed) and `drop` ids removed; this index is left as it was. Copy-on-write: the new index
        shares every table it does not change, and a changed table is copied once (shallow), so a change
        costs the tables on its hooks' paths, not the index."""
        new = HookIndex.__new__(HookIndex)
        new._buckets = dict(self._buckets)
        new._hooks = dict(self._hooks)
        owned: _Owned = {id(new._buckets): new._buckets}
        for hook_id in drop:
            new._remove(hook_id, owned)
        for hook in put:
            new._put(hook, owned)
        return new

    def _put(self, hook: CompiledHook, owned: _Owned) -> None:
        self._remove(hook.id, owned)
        if not hook.active:
            return
        self._hooks[hook.id] = hook
        for slot in _slots(hook):
            table: dict[Any, Any] = self._buckets
            for key in slot:
                table = _writable(table, key, owned, create=True)
            table[hook.id] = hook

    def _remove(self, hook_id: int, owned: _Owned) -> None:
        hook = self._hooks.pop(hook_id, None)
        if hook is None:
            return
        for slot in _slots(hook):
            path: list[dict[Any, Any]] = [self._buckets]
            for key in slot:
                path.append(_writable(path[-1], key, owned, create=False))
            del path[-1][hook_id]
            # Prune empty levels so a churn of hooks leaves no garbage and lookups stay short.
            for depth in range(len(slot) - 1, -1, -1):
                if path[depth + 1]:
                    break
                del path[depth][slot[depth]]


# Tables of an index being built that it owns alone (free to change), by id, kept alive while it builds.
_Owned = dict[int, dict[Any, Any]]


def _writable(parent: dict[Any, Any], key: Any, owned: _Owned, *, create: bool) -> dict[Any, Any]:
    """`parent[key]` as a table the build owns: copied the first time it is touched (or made, with create)."""
    child = parent.get(key)
    if child is not None and id(child) in owned:
        return child
    if child is None:
        if not create:
            raise KeyError(key)
        child = {}
    else:
        child = dict(child)
    parent[key] = child
    owned[id(child)] = child
    return child


# A hook's index kind: None (no filter to index by), an id filter kind ("campaigns") or the path of
# an `eq`/`in` payload condition (a tuple of segments); its slot values are ids or typed keys.
_Kind = str | tuple[str, ...] | None


def _slot_value(kind: _Kind, event: Mapping[str, Any], data: Mapping[str, Any]) -> Hashable | None:
    """The event's value for an index kind (what its hooks are filed under)."""
    if kind is None:
        return None
    if isinstance(kind, str):
        return _id(data.get(FILTER_FIELDS[kind]))
    return _key(_resolve(event, kind))


def _slots(hook: CompiledHook) -> list[tuple[tuple[int, str], int | None, _Kind, Hashable | None]]:
    """Where a hook lives in the index: one slot per (action, value of its most selective filter).

    The most selective filter is the id filter or `eq`/`in` condition with the fewest values (an id
    filter wins a tie).
    """
    kind: _Kind = None
    values: Iterable[Hashable | None] = (None,)
    if hook.filters:
        kind = min(hook.filters, key=lambda k: len(hook.filters[k]))
        values = hook.filters[kind]
    if hook.keyed is not None and (kind is None or len(hook.keyed[1]) < len(values)):  # type: ignore[arg-type]
        kind, values = hook.keyed
    return [
        ((hook.account_id, action), hook.database_id, kind, value)
        for action in sorted(hook.actions)
        for value in values
    ]

"""The layout says what the architecture is (issue 16), checked on the source itself.

- The API, capture, console and every library layer import nothing from `actionhooks.worker`: the
  worker is one consumer of the pipeline, not a library the others reach into.
- Each table of the pipeline is written (INSERT, UPDATE, DELETE, upsert) by exactly one module, and
  that module is in `actionhooks/storage`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import actionhooks
from actionhooks.storage import tables

PACKAGE = Path(actionhooks.__file__).parent
WRITERS = {"insert", "update", "delete", "upsert"}
NOT_WORKER = ["api", "broker", "capture", "console", "delivery", "hooks", "settings", "storage", "templating"]
TABLES = {
    name
    for name, value in vars(tables).items()
    if isinstance(value, type) and issubclass(value, tables.Base) and value is not tables.Base
}


def _modules(*parts: str) -> list[Path]:
    roots = [PACKAGE / part for part in parts] if parts else [PACKAGE]
    return sorted(p for root in roots for p in root.rglob("*.py") if "migrations" not in p.parts)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _callee(node: ast.expr) -> str | None:
    """`insert` for insert(...), postgresql.insert(...), insert_for(session)(...) and upsert(...)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):  # insert_for(session)(Table)
        name = _callee(node.func)
        return "insert" if name == "insert_for" else None
    return None


def _table_of(node: ast.expr) -> str | None:
    """The ORM class named by `Table` or `Table.__table__`."""
    if isinstance(node, ast.Attribute) and node.attr == "__table__":
        node = node.value
    return node.id if isinstance(node, ast.Name) and node.id in TABLES else None


def _writes(path: Path) -> set[str]:
    """Tables `path` writes: insert/update/delete/upsert(Table) and session.add(Table(...))."""
    written = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        callee = _callee(node.func)
        if callee in WRITERS:
            args = node.args  # upsert(session, Table, ...) names the table second
        elif callee in ("add", "add_all") and node.args and isinstance(node.args[0], ast.Call):
            args = [node.args[0].func]  # session.add(Table(...))
        else:
            continue
        written.update(table for table in map(_table_of, args) if table)
    return written


def test_nothing_outside_the_worker_imports_it() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(name for name in _imports(path) if name.startswith("actionhooks.worker"))
        for path in _modules(*NOT_WORKER)
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_each_table_is_written_by_one_storage_module() -> None:
    writers: dict[str, set[str]] = defaultdict(set)
    for path in _modules():
        for table in _writes(path):
            writers[table].add(str(path.relative_to(PACKAGE)))
    assert writers, "the scan found no write at all: it no longer recognises the statements"
    outside = {table: sorted(mods) for table, mods in writers.items() if any(not m.startswith("storage/") for m in mods)
               }
    assert outside == {}
    shared = {table: sorted(mods) for table, mods in writers.items() if len(mods) > 1}
    assert shared == {}

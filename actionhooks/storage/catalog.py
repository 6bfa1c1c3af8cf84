"""Catalog names per account: written by the API, read in bulk by the worker to render templates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from actionhooks.errors import NotFound
from actionhooks.storage.tables import CatalogEntry as CatalogRow
from actionhooks.storage.upsert import upsert
from actionhooks.templating import CatalogEntry

__all__ = ["catalog_for", "delete_entry", "get_entry", "list_entries", "put_entry"]

_CHUNK = 500  # ids per IN (...) list: well under every driver's bound on parameters


def put_entry(session: Session, account_id: int, kind: str, ident: int, entry: CatalogEntry) -> None:
    row = {"account_id": account_id, "kind": kind, "id": ident, "name": entry.name}
    upsert(session, CatalogRow, [{**row, "subid": entry.subid, "subject": entry.subject}], ("account_id", "kind", "id"))


def get_entry(session: Session, account_id: int, kind: str, ident: int) -> CatalogEntry:
    row = session.get(CatalogRow, (account_id, kind, ident))
    if row is None:
        raise NotFound(f"{kind} entry", ident)
    return CatalogEntry(row.name, row.subid, row.subject)


def list_entries(session: Session, account_id: int, kind: str) -> list[tuple[int, CatalogEntry]]:
    rows = session.scalars(
        select(CatalogRow).where(CatalogRow.account_id == account_id, CatalogRow.kind == kind).order_by(CatalogRow.id)
    )
    return [(row.id, CatalogEntry(row.name, row.subid, row.subject)) for row in rows]


def delete_entry(session: Session, account_id: int, kind: str, ident: int) -> None:
    gone = session.execute(
        delete(CatalogRow).where(CatalogRow.account_id == account_id, CatalogRow.kind == kind, CatalogRow.id == ident)
    ).rowcount
    if not gone:
        raise NotFound(f"{kind} entry", ident)


def catalog_for(
    session: Session, account_id: int, wanted: Mapping[str, Iterable[int]]
) -> dict[tuple[str, int], CatalogEntry]:
    """Entries of `account_id` for the wanted {kind: ids}, keyed (kind, id); unknown ones are absent.

    The result feeds templating.DictCatalog directly. One query per kind and 500 ids.
    """
    found: dict[tuple[str, int], CatalogEntry] = {}
    for kind, ids in wanted.items():
        id_list = sorted(set(ids))
        for start in range(0, len(id_list), _CHUNK):
            rows = session.execute(
                select(CatalogRow.id, CatalogRow.name, CatalogRow.subid, CatalogRow.subject).where(
                    CatalogRow.account_id == account_id,
                    CatalogRow.kind == kind,
                    CatalogRow.id.in_(id_list[start : start + _CHUNK]),
                )
            )
            for ident, name, subid, subject in rows:
                found[kind, ident] = CatalogEntry(name, subid, subject)
    return found

"""Profile fields per account and database: written by the API, read in bulk by the worker."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from actionhooks.errors import NotFound
from actionhooks.storage.tables import Profile
from actionhooks.storage.upsert import upsert

__all__ = ["delete_profile", "get_profile", "profiles_for", "put_profiles"]

_CHUNK = 500
ProfileKey = tuple[int, str]


def put_profiles(
    session: Session, account_id: int, list_id: int, profiles: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """Insert or replace the fields of each (profile_id, fields) of one database."""
    now = datetime.now(UTC)
    rows = [
        {"account_id": account_id, "list_id": list_id, "profile_id": pid, "fields": fields, "updated_at": now}
        for pid, fields in profiles
    ]
    upsert(session, Profile, rows, ("account_id", "list_id", "profile_id"))


def get_profile(session: Session, account_id: int, list_id: int, profile_id: str) -> tuple[dict[str, Any], datetime]:
    """(fields, updated_at in UTC) of one profile, or NotFound."""
    row = session.get(Profile, (account_id, list_id, profile_id))
    if row is None:
        raise NotFound("profile", profile_id)
    updated = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
    return row.fields, updated


def delete_profile(session: Session, account_id: int, list_id: int, profile_id: str) -> None:
    gone = session.execute(
        delete(Profile).where(
            Profile.account_id == account_id, Profile.list_id == list_id, Profile.profile_id == profile_id
        )
    ).rowcount
    if not gone:
        raise NotFound("profile", profile_id)


def profiles_for(
    session: Session, account_id: int, keys: Iterable[ProfileKey], fields: frozenset[str] | None = None
) -> dict[ProfileKey, dict[str, Any]]:
    """Fields of the wanted (list_id, profile_id) profiles of `account_id`; missing profiles are absent.

    With `fields`, only those are kept of each profile (read _CHUNK rows at a time), so a routing
    pass holds what hooks copy, not whole profiles.
    """
    by_list: dict[int, set[str]] = defaultdict(set)
    for list_id, profile_id in keys:
        by_list[list_id].add(profile_id)
    found: dict[ProfileKey, dict[str, Any]] = {}
    for list_id, pids in by_list.items():
        pid_list = sorted(pids)
        for start in range(0, len(pid_list), _CHUNK):
            rows = session.execute(
                select(Profile.profile_id, Profile.fields).where(
                    Profile.account_id == account_id,
                    Profile.list_id == list_id,
                    Profile.profile_id.in_(pid_list[start : start + _CHUNK]),
                )
            )
            for profile_id, stored in rows:
                kept = stored if fields is None else {k: v for k, v in stored.items() if k in fields}
                found[list_id, profile_id] = kept
    return found

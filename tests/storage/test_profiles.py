"""Profile storage: replace per account and database, and the bulk read the worker copies fields from."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.errors import NotFound
from actionhooks.storage import profiles


def test_put_replaces_fields_and_profiles_are_per_account_and_database(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        profiles.put_profiles(s, 1, 10, [("p1", {"email": "old@x", "age": 3})])
        profiles.put_profiles(s, 1, 10, [("p1", {"email": "ann@x"})])
        profiles.put_profiles(s, 2, 10, [("p2", {"email": "theirs@x"})])
    with sessions.begin() as s:
        fields, updated_at = profiles.get_profile(s, 1, 10, "p1")
        assert fields == {"email": "ann@x"}
        assert updated_at.utcoffset() is not None
        with pytest.raises(NotFound):
            profiles.get_profile(s, 1, 10, "p2")
        with pytest.raises(NotFound):
            profiles.get_profile(s, 1, 11, "p1")


def test_delete_removes_one_profile_and_a_missing_one_is_not_found(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        profiles.put_profiles(s, 1, 10, [("a", {}), ("b", {})])
    with sessions.begin() as s:
        profiles.delete_profile(s, 1, 10, "a")
        with pytest.raises(NotFound):
            profiles.delete_profile(s, 2, 10, "b")
    with sessions() as s:
        assert profiles.profiles_for(s, 1, {(10, "a"), (10, "b")}) == {(10, "b"): {}}


def test_profiles_for_reads_many_keys_across_databases_of_one_account(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        profiles.put_profiles(s, 1, 10, [(f"p{i}", {"n": i}) for i in range(700)])
        profiles.put_profiles(s, 1, 20, [("p1", {"n": "twenty"})])
        profiles.put_profiles(s, 2, 10, [("x", {"n": "theirs"})])
    wanted = {(10, f"p{i}") for i in range(0, 700, 1)} | {(20, "p1"), (20, "missing"), (10, "x")}
    with sessions() as s:
        found = profiles.profiles_for(s, 1, wanted)
    assert len(found) == 701
    assert found[10, "p699"] == {"n": 699}
    assert found[20, "p1"] == {"n": "twenty"}
    assert (10, "x") not in found


def test_profiles_for_keeps_only_the_fields_hooks_copy(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        profiles.put_profiles(s, 1, 10, [("p1", {"email": "ann@x", "bio": "b" * 4000, "age": 3})])
    with sessions() as s:
        assert profiles.profiles_for(s, 1, {(10, "p1")}, frozenset({"email", "age"})) == {
            (10, "p1"): {"email": "ann@x", "age": 3}
        }

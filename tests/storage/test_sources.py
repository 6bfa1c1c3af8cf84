"""The sources repository and visitor identities on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.capture.model import SourceSpec
from actionhooks.errors import NotFound
from actionhooks.storage.sources import SqlSourceRepository, identities_for, put_identities


def spec(**fields: object) -> SourceSpec:
    return SourceSpec.model_validate({"name": "s", "kind": "redirect", **fields})


def test_sources_are_stored_per_account_and_found_by_key(sessions: sessionmaker[Session]) -> None:
    repo = SqlSourceRepository(sessions)
    mine = repo.add(23, spec(allowed_hosts=["shop.example"], secret="k" * 20))
    theirs = repo.add(24, spec())
    assert mine.key != theirs.key
    assert mine.spec.secret == "k" * 20
    assert len(theirs.spec.secret or "") >= 40  # generated: 256 bits
    assert [s.id for s in repo.list(23)] == [mine.id]
    assert repo.by_key(mine.key) == mine
    assert repo.by_key("src_" + "z" * 26) is None
    with pytest.raises(NotFound):
        repo.get(24, mine.id)
    changed = repo.replace(23, mine.id, spec(active=False, secret="k" * 20))
    assert changed.spec.active is False
    assert changed.key == mine.key
    with pytest.raises(NotFound):
        repo.delete(24, mine.id)
    assert repo.delete(23, mine.id) == mine.key
    assert repo.by_key(mine.key) is None


def test_the_latest_identify_wins_and_identities_stay_in_their_account(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        put_identities(session, 23, {"v1": ("p1", 111), "v2": ("p2", None)}, time.time())
        put_identities(session, 23, {"v1": ("p9", 112)}, time.time())
        put_identities(session, 24, {"v3": ("p3", 1)}, time.time())
        session.commit()
        assert identities_for(session, 23, ["v1", "v2", "v3"]) == {"v1": ("p9", 112), "v2": ("p2", None)}
        assert identities_for(session, 24, ["v1", "v3"]) == {"v3": ("p3", 1)}

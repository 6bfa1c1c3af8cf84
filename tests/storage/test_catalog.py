"""Catalog storage: upsert per account, and the bulk read the worker renders templates from."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.errors import NotFound
from actionhooks.hooks.matching import CompiledHook, compile_hook
from actionhooks.settings import Settings
from actionhooks.storage import catalog
from actionhooks.storage.lookups import load_catalog
from actionhooks.templating import CatalogEntry, DictCatalog
from tests.support.engine import event


def test_put_overwrites_an_entry_and_lists_are_per_account_and_kind(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        catalog.put_entry(s, 1, "campaigns", 9, CatalogEntry("old", "sub"))
        catalog.put_entry(s, 1, "campaigns", 9, CatalogEntry("Spring", "spring-24"))
        catalog.put_entry(s, 1, "messages", 9, CatalogEntry("Hello", subject="Hi there"))
        catalog.put_entry(s, 2, "campaigns", 10, CatalogEntry("theirs"))
    with sessions.begin() as s:
        assert catalog.list_entries(s, 1, "campaigns") == [(9, CatalogEntry("Spring", "spring-24"))]
        assert catalog.get_entry(s, 1, "messages", 9) == CatalogEntry("Hello", subject="Hi there")
        with pytest.raises(NotFound):
            catalog.get_entry(s, 1, "campaigns", 10)


def test_delete_removes_only_the_accounts_entry(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        catalog.put_entry(s, 1, "pixels", 4, CatalogEntry("p"))
        catalog.put_entry(s, 2, "pixels", 4, CatalogEntry("p2"))
    with sessions.begin() as s:
        catalog.delete_entry(s, 1, "pixels", 4)
        with pytest.raises(NotFound):
            catalog.delete_entry(s, 1, "pixels", 4)
    with sessions.begin() as s:
        assert catalog.list_entries(s, 2, "pixels") == [(4, CatalogEntry("p2"))]


def test_catalog_for_returns_the_wanted_entries_of_the_account_ready_for_templates(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        for ident in range(1200):
            catalog.put_entry(s, 1, "resources", ident, CatalogEntry(f"r{ident}"))
        catalog.put_entry(s, 1, "campaigns", 973, CatalogEntry("Spring", "spring-24"))
        catalog.put_entry(s, 2, "campaigns", 974, CatalogEntry("theirs"))
    with sessions() as s:
        found = catalog.catalog_for(s, 1, {"resources": set(range(0, 1200, 2)), "campaigns": {973, 974, 1}})
    assert len(found) == 601
    assert found["resources", 1198] == CatalogEntry("r1198")
    names = DictCatalog(found)
    assert names.campaign_subid(973) == "spring-24"
    assert names.name("campaigns", 974) is None


def test_a_routed_chunk_loads_only_the_catalog_kinds_its_hooks_values_read(sessions: sessionmaker[Session]) -> None:
    def hook(hook_id: int, values: dict[str, str]) -> CompiledHook:
        return compile_hook({"id": hook_id, "account_id": 1, "name": "h", "active": True, "actions": ["click"],
                             "custom_data": {"values": values},
                             "delivery": {"type": "http", "url": "http://127.0.0.1:9/"}}, Settings())

    with sessions.begin() as s:
        catalog.put_entry(s, 1, "campaigns", 973, CatalogEntry("Spring", "spring-24"))
        catalog.put_entry(s, 1, "resources", 3, CatalogEntry("Landing page"))
    plain, named = hook(1, {"id": "{{uuid}}", "seq": "p-{{profile_id}}"}), hook(2, {"c": "{{campaign_name}}"})
    events = [event(0, account_id=1)]
    with sessions() as s:
        assert load_catalog(s, 1, [plain], {1: events}) == {}
        assert load_catalog(s, 1, [plain, named], {1: events, 2: events}) == {
            ("campaigns", 973): CatalogEntry("Spring", "spring-24")
        }

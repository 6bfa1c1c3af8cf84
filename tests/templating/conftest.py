from __future__ import annotations

from typing import Any

import pytest

from actionhooks.templating import DictCatalog


@pytest.fixture
def catalog() -> DictCatalog:
    """Names of account 23's objects, as PUT /catalog/{kind}/{id} would store them."""
    cat = DictCatalog()
    cat.put("campaigns", 973, "Black Friday", subid="bf-2024")
    cat.put("databases", 111, "Customers")
    cat.put("segments", 7, "VIP")
    cat.put("messages", 17, "Welcome letter", subject="Hello, friend")
    cat.put("resources", 3, "Main site")
    return cat


@pytest.fixture
def event() -> dict[str, Any]:
    """The documented click event (docs/wire-format.md, "Example"), with ids the catalog knows."""
    return {
        "event_type": "click",
        "event_date": "2018-03-04T13:13:19.034315796Z",
        "profile_id": "abcdefgh12345678",
        "list_id": 111,
        "account_id": 23,
        "is_test": False,
        "event_data": {"campaign_id": 973, "message_id": 17, "segment_id": 7, "resource_id": 3},
    }

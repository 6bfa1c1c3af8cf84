"""Worker-level test setup: a hook with one ready batch, on a Runtime's own database."""

from __future__ import annotations

from typing import Any

from actionhooks.storage.tables import Hook
from actionhooks.worker.batching import form_batches
from actionhooks.worker.runtime import Runtime


def hook_with_batch(rt: Runtime, delivery: dict[str, Any], events: list[dict[str, Any]]) -> int:
    """Store a hook of account 1 for opens delivering to `delivery`, cut `events` into its batch; its id."""
    with rt.sessions() as session:
        row = Hook(account_id=1, name="h", active=True, actions=["open"], filters={}, custom_data={},
                   delivery=delivery)
        session.add(row)
        session.commit()
        rt.hooks.refresh(force=True)
        hook = rt.hooks.get(row.id)
        assert hook is not None
        form_batches(session, hook, events)
        session.commit()
        return row.id

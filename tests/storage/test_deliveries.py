"""deliveries: the batch table's writes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.storage import deliveries
from actionhooks.storage.tables import Delivery, Hook


def test_pending_and_failed_batches_added_together_keep_their_own_columns(sessions: sessionmaker[Session]) -> None:
    # Given a hook, and a backfill's rows: a failed batch (events it could not render) between two pending ones
    with sessions() as session:
        hook = Hook(account_id=1, name="h", active=True, actions=["open"], filters={}, custom_data={},
                    delivery={"type": "http", "url": "http://x/"})
        session.add(hook)
        session.flush()
        pending = deliveries.new_batch(hook.id, 1, [{"n": 1}], 100.0)
        failed = deliveries.new_batch(hook.id, 1, [{"n": 2}], 100.0, status="failed", failed_at=100.0,
                                      last_error="rendering failed: x")
        origin = deliveries.new_batch(hook.id, 1, [{"n": 3}], 100.0, accepted_at=99.0, trace_context="00-ab")
        # When they are added in one call, whichever comes first
        deliveries.add(session, [pending, failed, origin])
        session.commit()
        got = {row.id: row for row in session.scalars(select(Delivery))}
    # Then each keeps what it was given: the failed one is on the failed list, not pending
    assert (got[failed["id"]].status, got[failed["id"]].last_error, got[failed["id"]].failed_at) == (
        "failed", "rendering failed: x", 100.0)
    assert (got[pending["id"]].status, got[pending["id"]].failed_at) == ("pending", None)
    assert (got[origin["id"]].accepted_at, got[origin["id"]].trace_context) == (99.0, "00-ab")

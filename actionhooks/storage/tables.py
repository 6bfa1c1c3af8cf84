"""The database schema, for SQLite (embedded) and PostgreSQL (production).

Durability lives here, not in the broker: accepted events, per-hook outboxes, delivery batches with
their attempt counters and the failed list are rows, so a lost broker message only delays work
(the scheduler finds it again) and never loses it. Event bodies are stored as orjson blobs, one
row per request or batch, never one row per event: the hot path writes few, large rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# SQLite would reuse the id of a deleted last row; a new hook must never inherit a deleted hook's
# id (workers cache compiled hooks by id and version), nor a batch its attempts.
NO_REUSE = {"sqlite_autoincrement": True}


class ApiToken(Base):
    """An API token: only the SHA-256 of the secret is kept (tokens are 256-bit random, so no KDF is needed)."""

    __tablename__ = "api_tokens"
    __table_args__ = NO_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigInteger, index=True)
    scope: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ConsoleSession(Base):
    """A console sign-in: its own random secret (only the SHA-256 kept) in the browser's cookie instead of
    the admin token itself, so "Log out" can end it and a copied cookie is no API token. Deleting the
    admin token it was opened with ends it too (ON DELETE CASCADE)."""

    __tablename__ = "console_sessions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(BigInteger)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class Hook(Base):
    """A hook as configured through the API; `version` grows on every change so workers notice it."""

    __tablename__ = "hooks"
    __table_args__ = NO_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigInteger, index=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    database_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    actions: Mapped[list[str]] = mapped_column(JSON)
    filters: Mapped[dict[str, list[int]]] = mapped_column(JSON)
    custom_data: Mapped[dict[str, object]] = mapped_column(JSON)
    include_content: Mapped[bool] = mapped_column(Boolean, default=False)
    delivery: Mapped[dict[str, object]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Unix time the hook last became active: events accepted before it are not captured, even when
    # routed later (a stopped hook captures nothing from the moment it is stopped).
    active_since: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class HookChange(Base):
    """Append-only log of hook changes (id grows); workers poll max(id) to refresh their compiled hooks."""

    __tablename__ = "hook_changes"
    __table_args__ = NO_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hook_id: Mapped[int] = mapped_column(BigInteger, index=True)
    account_id: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CatalogEntry(Base):
    """A name templates can show: databases, resources, campaigns (+subid), messages (+subject), segments, pixels."""

    __tablename__ = "catalog"
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, default="")
    subid: Mapped[str | None] = mapped_column(Text, nullable=True)
    subject: Mapped[str | None] = mapped_column(Text, nullable=True)


class Profile(Base):
    """Profile fields that hooks copy into custom_data."""

    __tablename__ = "profiles"
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    list_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    fields: Mapped[dict[str, object]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SeenEvent(Base):
    """event_ids accepted in the last EVENT_DEDUP_HOURS, so a resent event is not delivered twice."""

    __tablename__ = "seen_events"
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    seen_at: Mapped[float] = mapped_column(Float, index=True)


class Intake(Base):
    """Events accepted by POST /events and not yet routed: one row per request, events as an orjson array."""

    __tablename__ = "intake"
    __table_args__ = NO_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigInteger, index=True)
    events: Mapped[bytes] = mapped_column(LargeBinary)
    n_events: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    # W3C traceparent of the accept span (tracing.py), so routing links to it across the database hop.
    trace_context: Mapped[str | None] = mapped_column(String(64), nullable=True)


class RouteSignal(Base):
    """Present while an account has intake waiting for a router; lets the API send one trigger, not one per request."""

    __tablename__ = "route_signals"
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    signalled_at: Mapped[float] = mapped_column(Float)


class Outbox(Base):
    """Rendered events of one hook waiting to be cut into delivery batches (HTTP batching window)."""

    __tablename__ = "outbox"
    __table_args__ = NO_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hook_id: Mapped[int] = mapped_column(ForeignKey("hooks.id", ondelete="CASCADE"), index=True)
    events: Mapped[bytes] = mapped_column(LargeBinary)
    n_events: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    # When the batch window of these events closes (arrival of the oldest + batch_timeout_sec).
    due_at: Mapped[float] = mapped_column(Float, index=True)
    # Acceptance (POST /events) of the oldest event, for the accept -> delivered latency histogram.
    accepted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    trace_context: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the routing span's


class Delivery(Base):
    """One batch for one hook: the unit of attempt, retry and the failed list.

    `id` is the batch id (the `webhook-id` header), stable across retries. `attempts` counts
    attempts *started*: it is incremented when a worker claims the batch, before sending, so a
    worker killed mid-send uses up that attempt. `lease_until` hides a claimed batch from other
    workers; when it passes without an outcome, the batch is due again.
    """

    __tablename__ = "deliveries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hook_id: Mapped[int] = mapped_column(ForeignKey("hooks.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(BigInteger)
    events: Mapped[bytes] = mapped_column(LargeBinary)
    n_events: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    lease_until: Mapped[float] = mapped_column(Float, default=0.0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    failed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Acceptance of the batch's oldest event (accept -> delivered latency) and the routing span that
    # formed it (tracing.py: the deliver span links to it). NULL for batches formed before 0008.
    accepted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    trace_context: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_hook", "hook_id", "status"),
    )


class HookDeliveryState(Base):
    """What the drains of one hook share across every worker process and machine (storage/hook_state.py):
    the token bucket of its rate limit, whether its receiver is paused (or gone), and until when a
    drain would find nothing it may send (`hold_until`, so the scheduler does not wake it for nothing).
    No row means: full bucket, active, never failed. Created on the first write."""

    __tablename__ = "hook_delivery_state"
    hook_id: Mapped[int] = mapped_column(ForeignKey("hooks.id", ondelete="CASCADE"), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, default=0.0)
    tokens_at: Mapped[float] = mapped_column(Float, default=0.0)  # 0: never spent (a full bucket)
    hold_until: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    failing_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    paused_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    next_probe_at: Mapped[float] = mapped_column(Float, default=0.0)
    gone_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Attempt(Base):
    """One delivery attempt, for GET /hooks/{id}/attempts (recorded when it starts, completed when it ends)."""

    __tablename__ = "attempts"
    __table_args__ = NO_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hook_id: Mapped[int] = mapped_column(ForeignKey("hooks.id", ondelete="CASCADE"), index=True)
    delivery_id: Mapped[str] = mapped_column(String(40), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16), default="started")  # started | ok | error
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_events: Mapped[int] = mapped_column(Integer)


class WorkerStat(Base):
    """Cumulative worker counters for /metrics, cluster-wide (storage/stats.py): one row per metric,
    label set and shard. Workers add a round's totals in the transaction that records the round; a
    shard per process keeps them from queueing on one hot row; the API sums the shards."""

    __tablename__ = "worker_stats"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    labels: Mapped[str] = mapped_column(String(200), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)


class Content(Base):
    """Message content stored per send for HOOK_CONTENT_CLEANUP_HOURS, attached for include_content hooks."""

    __tablename__ = "contents"
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    send_message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    content: Mapped[dict[str, object]] = mapped_column(JSON)
    stored_at: Mapped[float] = mapped_column(Float, index=True)


class QuarantinedEvent(Base):
    """An accepted event whose routing kept failing, set aside with its error so the account's other
    events flow on (storage/quarantine.py); an admin lists it and replays it into the intake."""

    __tablename__ = "quarantined_events"
    __table_args__ = NO_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigInteger, index=True)
    event_id: Mapped[str] = mapped_column(String(100))
    event: Mapped[bytes] = mapped_column(LargeBinary)  # the event as accepted (orjson)
    accepted_at: Mapped[float] = mapped_column(Float)
    quarantined_at: Mapped[float] = mapped_column(Float, index=True)  # the scheduler's expiry looks by it
    error: Mapped[str] = mapped_column(Text)


class WriteProbe(Base):
    """One row the API rewrites now and then to learn whether the database still takes writes (/healthz)."""

    __tablename__ = "write_probes"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    probed_at: Mapped[float] = mapped_column(Float)


class Source(Base):
    """A capture source (README, "Capture"): its public `key` names it in /t/{key}/… URLs; `config` holds the
    rest of its settings as the API validated them (capture/model.py), `secret` signs redirect links."""

    __tablename__ = "sources"
    __table_args__ = NO_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigInteger, index=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    config: Mapped[dict[str, object]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class VisitorIdentity(Base):
    """Which profile a visitor id turned out to be (the last `identify`), per account: later captured
    events of that visitor, from any source of the account, carry its profile_id."""

    __tablename__ = "visitor_identities"
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    visitor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(200))
    list_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    identified_at: Mapped[float] = mapped_column(Float)


class SourceCapture(Base):
    """A source's newest captured events of one capture transaction (storage/sources.py): short summaries,
    at most CAPTURES_KEPT, for the console's "Last captured events". Captured events otherwise live only
    in intake blobs the router consumes; one row per source and transaction keeps the cost per batch."""

    __tablename__ = "source_captures"
    __table_args__ = (Index("ix_source_captures_source_id_id", "source_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[int] = mapped_column(BigInteger)
    captured_at: Mapped[float] = mapped_column(Float)
    events: Mapped[list[dict[str, object]]] = mapped_column(JSON)


# Where PostgreSQL keeps the archive's daily partitions (and its default partition): a schema of
# their own, so they never show up as tables of the application schema (nor in `alembic check`).
ARCHIVE_PARTITION_SCHEMA = "actionhooks_archive"


class ArchivedRequest(Base):
    """Accepted events kept for backfill (EVENT_ARCHIVE_HOURS): one row per POST /events request,
    the very orjson blob its intake row holds, so archiving costs one insert and no encoding.

    On PostgreSQL the table is partitioned by day of `accepted_at` (storage/archive.py creates the
    partitions ahead and drops a whole day at once); on SQLite it is a WITHOUT ROWID table clustered
    by time, so expiry deletes a contiguous range. `id` is the request's intake id (a tie-breaker
    for rows accepted in the same microsecond).
    """

    __tablename__ = "event_archive"
    __table_args__ = (
        # Covering: a backfill picks its slices from this index alone (id, n_events), never from the blobs.
        Index("ix_event_archive_account", "account_id", "accepted_at", "id", "n_events"),
        {"postgresql_partition_by": "RANGE (accepted_at)", "sqlite_with_rowid": False},
    )
    accepted_at: Mapped[float] = mapped_column(Float, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account_id: Mapped[int] = mapped_column(BigInteger)
    n_events: Mapped[int] = mapped_column(Integer)
    events: Mapped[bytes] = mapped_column(LargeBinary)


class Backfill(Base):
    """A backfill job: deliver the archived events of [from_at, to_at) that a hook selects to it.

    `state`: queued (behind another job of the hook) -> running (scanning the archive, slice by
    slice from the cursor) -> delivering (every batch made, some not yet sent) -> done; or
    cancelled / failed. The cursor and counters are committed with each slice's batches, so a
    worker killed mid-slice loses nothing and repeats nothing. `lease_until` keeps two workers off
    one job; `touched_at` tells the scheduler a job whose worker died.
    """

    __tablename__ = "backfills"
    __table_args__ = (Index("ix_backfills_hook", "hook_id", "state"), Index("ix_backfills_state", "state"), NO_REUSE)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hook_id: Mapped[int] = mapped_column(ForeignKey("hooks.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(BigInteger)
    from_at: Mapped[float] = mapped_column(Float)
    to_at: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))
    cursor_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    cursor_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    scanned: Mapped[int] = mapped_column(BigInteger, default=0)
    matched: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_until: Mapped[float] = mapped_column(Float, default=0.0)
    touched_at: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class BackfillBatch(Base):
    """A delivery batch a backfill made: delivered once its `deliveries` row is gone, failed while it
    is on the failed list. Kept until the job is deleted with its hook."""

    __tablename__ = "backfill_batches"
    delivery_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    backfill_id: Mapped[int] = mapped_column(ForeignKey("backfills.id", ondelete="CASCADE"), index=True)
    n_events: Mapped[int] = mapped_column(Integer)

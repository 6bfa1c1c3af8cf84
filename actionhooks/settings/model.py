"""The one settings model: a field per main.json key, named exactly like the key.

The field defaults *are* the embedded defaults (there is no second copy in a file), so an engine
started with no main.json at all runs on SQLite and the embedded broker. Because each field is
named after its key, a pydantic error location is the key a user has to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PositiveSeconds = Annotated[float, Field(gt=0)]


class Settings(BaseModel):
    """Validated engine settings (frozen: built once at start-up and passed down, never global)."""

    # allow_inf_nan: Python's json module accepts NaN and Infinity, which would slip past gt=0 bounds.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    HOOK_RETRY_TIMES: int = Field(
        4, ge=1, le=100, description="Maximum send attempts of one batch, the first included."
    )
    HOOK_RETRY_PERIOD_SEC: list[PositiveSeconds] = Field(
        default_factory=lambda: [15.0],
        min_length=1,
        description="Seconds between attempts: a number, or a list (wait before each retry, last repeating).",
    )
    HOOK_CONTENT_CLEANUP_HOURS: float = Field(72, gt=0, description="How long stored message content is kept.")
    HOOK_HTTP_TIMEOUT_SEC: float = Field(10, gt=0, le=600, description="Timeout of one HTTP delivery request.")
    HOOK_ALLOW_PRIVATE_TARGETS: bool = Field(False, description="Allow targets on private addresses (SSRF guard off).")
    HOOK_PERMANENT_STATUS_CODES: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        default_factory=list,
        description="HTTP statuses that are never retried (the batch goes to the failed list).",
    )
    HOOK_PAUSE_AFTER_SEC: float = Field(
        3600, ge=0, le=30 * 86400,
        description="Seconds of nothing but failed attempts after which a hook is paused (0 = never pause).",
    )
    HOOK_PROBE_EVERY_SEC: float = Field(
        60, gt=0, le=86400, description="How often a paused hook's receiver is probed with one real batch."
    )
    DATABASE_URL: str = Field("sqlite:///data/actionhooks.db", min_length=1, description="SQLAlchemy database URL.")
    BROKER_URL: str = Field(
        "", description="Celery broker URL; empty = the embedded durable broker (SQLite file under DATA_DIR)."
    )
    BROKER_QUEUE: str = Field(
        "actionhooks",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Celery queue the roles share; engines sharing one broker need different names.",
    )
    DATA_DIR: str = Field("data", min_length=1, description="Folder for the embedded database and broker files.")
    API_HOST: str = Field("127.0.0.1", min_length=1, description="API listen address.")
    API_PORT: int = Field(8080, ge=0, le=65535, description="API listen port (0 = any free port).")
    API_REQUEST_TIMEOUT_SEC: float = Field(
        30, gt=0, le=60, description="Time a client has to send a whole request (headers and body) before it is cut."
    )
    API_MAX_CONNECTIONS: int = Field(
        500, ge=1, le=100_000, description="Open connections the API serves at once; more get 503 and are closed."
    )
    WORKER_POOL: Literal["prefork", "threads", "solo"] = Field("prefork", description="Celery worker pool.")
    WORKER_CONCURRENCY: int = Field(2, ge=1, le=256, description="Celery worker processes or threads.")
    SCHEDULER_TICK_SEC: float = Field(1.0, gt=0, le=60, description="How often the scheduler looks for due work.")
    ROUTE_INTERVAL_SEC: float = Field(
        0.1, gt=0, le=5, description="Under a steady flow of events, an account's router starts at most this often; "
        "what arrives meanwhile is routed together. The first events after a quiet spell are routed at once.",
    )
    CLEANUP_EVERY_SEC: float = Field(
        30, gt=0, le=3600, description="How often the scheduler deletes expired content, dedup ids and old attempts."
    )
    EVENTS_MAX_REQUEST_BYTES: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest accepted POST /events body; larger gets 413."
    )
    EVENTS_MAX_PER_REQUEST: int = Field(10_000, ge=1, description="Most events in one POST /events request.")
    EVENT_DEDUP_HOURS: float = Field(24, gt=0, description="How long an accepted event_id is remembered.")
    EVENT_ARCHIVE_HOURS: float = Field(
        168, ge=0, le=24 * 366, description="How long accepted events are archived for backfill (0 = off)."
    )
    TEMPLATE_MAX_OUTPUT_CHARS: int = Field(65_536, ge=1, description="Largest rendered custom_data value.")
    TEMPLATE_MAX_RENDER_MS: float = Field(50, gt=0, description="Longest render of one custom_data value.")
    TEMPLATE_MAX_EVENT_CHARS: int = Field(
        131_072, ge=1, description="Largest custom_data of one delivered event (profile fields and values together)."
    )
    TEMPLATE_MAX_BATCH_CHARS: int = Field(
        16 * 1024 * 1024, ge=1,
        description="Most custom_data characters one routing pass renders for one hook (so in any one batch).",
    )
    QUARANTINE_KEEP_HOURS: float = Field(
        168, gt=0, le=24 * 366, description="How long a quarantined event is kept for replay before it is deleted."
    )
    ATTEMPTS_KEEP_PER_HOOK: int = Field(1000, ge=1, description="Delivery attempts kept per hook for the log.")
    METRICS_TOKEN: str = Field(
        "", max_length=500, description="When set, GET /metrics needs 'Authorization: Bearer <METRICS_TOKEN>'."
    )
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")

    @field_validator("HOOK_RETRY_PERIOD_SEC", mode="before")
    @classmethod
    def _number_is_a_one_item_list(cls, value: object) -> object:
        """main.json may say 15 or [15, 60, 300]; the engine always works with the list form."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return [value]
        return value

    @field_validator("DATABASE_URL")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("BROKER_URL")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "amqp://", "amqps://", "sqla+", "memory://")):
            raise ValueError("must be empty (embedded), redis://…, amqp://… or sqla+…")
        return value

    @property
    def database_url(self) -> str:
        """DATABASE_URL with a relative SQLite path resolved and the psycopg 3 driver chosen."""
        url = self.DATABASE_URL
        if url.startswith("postgres:"):
            url = "postgresql:" + url.removeprefix("postgres:")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url

    @property
    def broker_url(self) -> str:
        """The broker Celery uses: BROKER_URL, or the embedded SQLite broker under DATA_DIR."""
        if self.BROKER_URL:
            return self.BROKER_URL
        return f"sqlite:///{(Path(self.DATA_DIR) / 'broker.sqlite').resolve()}"  # broker/embedded.py

    @property
    def embedded_broker(self) -> bool:
        return not self.BROKER_URL

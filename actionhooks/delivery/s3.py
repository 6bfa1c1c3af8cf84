"""S3 archive transport: one gzip JSON Lines object per batch, written with PutObject.

Key: `<prefix>/<yyyy>/<mm>/<dd>/<batch id>.jsonl.gz`, where `prefix` is the hook's template
(default "actionhooks"; "" writes from the bucket's root) and the date is the events' `event_date`
in UTC. The key depends only on the batch and its events, never on the time of the attempt, so a
retry overwrites the object it may already have written instead of adding a copy: the batch id is
the identity, as `webhook-id` is over HTTP. A batch whose events render different prefixes or fall
on different days becomes one object per (prefix, day), each under the same batch id; an object
that failed is retried alone (`delivered` names the events of the others).

The object: one event per line (compact JSON, "\\n" after each), gzip (mtime 0, so the same events
give the same bytes and ETag), Content-Type application/gzip, metadata hook-id, batch-id, events.
"""

from __future__ import annotations

import datetime
import gzip
import time
from typing import Any, ClassVar

from actionhooks.delivery.aws import AWS_ERRORS, AwsTransport, translate
from actionhooks.delivery.base import Batch, Receipt
from actionhooks.delivery.config import S3Delivery
from actionhooks.delivery.wire import dumps
from actionhooks.errors import PayloadError
from actionhooks.events import event_timestamp

__all__ = ["S3Transport"]

_KEY_MAX_BYTES = 1024
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class S3Transport(AwsTransport[S3Delivery]):
    """PutObject of `<prefix>/<yyyy>/<mm>/<dd>/<batch id>.jsonl.gz` into `bucket`."""

    type: ClassVar[str] = "s3"
    service, what = "s3", "S3 endpoint"

    def client_options(self) -> dict[str, Any]:
        # AWS wants virtual-hosted addressing (bucket.s3.<region>.amazonaws.com); other endpoints
        # (MinIO, moto...) mostly serve path-style only, and then the host is exactly the one vetted.
        return {"s3": {"addressing_style": "path" if self.config.endpoint_url else "virtual"}}

    def _send(self, batch: Batch) -> Receipt:
        started = time.perf_counter()
        client = self._vetted_client()
        objects = self._objects(batch)
        delivered: set[int] = set()
        written: list[dict[str, Any]] = []
        for key, indexes in objects.items():
            if len(key.encode()) > _KEY_MAX_BYTES:
                raise PayloadError(f"{self._where()}: key {key[:100]!r}... is over S3's {_KEY_MAX_BYTES} bytes",
                                   delivered=frozenset(delivered))
            events = [batch.events[i] for i in indexes]
            body = gzip.compress(b"".join(dumps(e) + b"\n" for e in events), mtime=0)
            try:
                answer = client.put_object(
                    Bucket=self.config.bucket, Key=key, Body=body, ContentType="application/gzip",
                    Metadata={"hook-id": str(batch.hook_id), "batch-id": batch.batch_id, "events": str(len(events))},
                )
            except AWS_ERRORS as exc:
                raise translate(exc, f"{self._where()} key {key!r}", frozenset(delivered)) from exc
            delivered.update(indexes)
            written.append({"bucket": self.config.bucket, "key": key, "etag": answer.get("ETag"),
                            "bytes": len(body), "events": events})
        return Receipt(latency_ms=(time.perf_counter() - started) * 1000, payload=written,
                       details={"objects": len(written)})

    def _objects(self, batch: Batch) -> dict[str, list[int]]:
        """Object key -> indexes of the events it holds, in batch order."""
        objects: dict[str, list[int]] = {}
        for index, event in enumerate(batch.events):
            prefix = self.templates["prefix"].render(event).strip("/")
            day = _day(event)
            key = f"{prefix}/{day}/{batch.batch_id}.jsonl.gz" if prefix else f"{day}/{batch.batch_id}.jsonl.gz"
            objects.setdefault(key, []).append(index)
        return objects

    def _where(self) -> str:
        return f"S3 bucket {self.config.bucket!r}"


def _day(event: dict[str, Any]) -> str:
    """yyyy/mm/dd of the event's event_date (UTC)."""
    try:
        seconds, _nanos = event_timestamp(event)
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"event {event.get('event_id')!r} has no valid event_date for the S3 key: {exc}",
                           retryable=False) from exc
    d = _EPOCH + datetime.timedelta(seconds=seconds)
    return f"{d.year:04d}/{d.month:02d}/{d.day:02d}"


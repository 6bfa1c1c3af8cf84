"""Amazon SQS transport: the batch as SendMessageBatch calls of up to 10 messages, one per event.

The body is the event as JSON; message attributes `event_id`, `hook_id` and `event_type` (String)
carry its identity. A FIFO queue (URL ending in `.fifo`) also gets MessageDeduplicationId = the
event id (SQS drops a copy sent again within 5 minutes) and MessageGroupId = the hook's
`message_group_id` template (default `{{profile_id}}`: order per profile), "actionhooks" when it
renders empty.

SendMessageBatch answers per entry: Successful ones are delivered; Failed ones are not, and the
raised error's `delivered` names the rest, so the retry sends only the failed entries. When SQS
refuses a whole call for one message's content (too large for the queue, characters it does not
take), the call's entries are sent one by one so that message fails alone. An entry
failed by the sender's fault (SenderFault: a body SQS refuses) fails as a PayloadError when every
failure is of that kind; otherwise the attempt is retried. Calls carry at most 10 entries and at
most 256 KiB together (a larger single message goes alone and SQS decides), one after the other; no
new call starts once the attempt's HOOK_HTTP_TIMEOUT_SEC has passed (the rest is retried).
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, ClassVar

import botocore.exceptions as bex

from actionhooks.delivery.aws import AWS_ERRORS, AwsTransport, translate
from actionhooks.delivery.base import Batch, Receipt
from actionhooks.delivery.config import SqsDelivery
from actionhooks.delivery.wire import dumps
from actionhooks.errors import DeliveryError, PayloadError, TargetRejected, TargetUnreachable

__all__ = ["SqsTransport"]

_ENTRIES_PER_CALL = 10
_BYTES_PER_CALL = 256 * 1024
_ID_MAX = 128  # MessageDeduplicationId and MessageGroupId
_DEFAULT_GROUP = "actionhooks"
_CONTENT_CODES = frozenset({"InvalidParameterValue", "BatchRequestTooLong", "InvalidMessageContents"})
_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]*$")


class SqsTransport(AwsTransport[SqsDelivery]):
    """SendMessageBatch to `queue_url`; FIFO: dedup id = event_id, group id = rendered template."""

    type: ClassVar[str] = "sqs"
    service, what = "sqs", "SQS endpoint"

    def _send(self, batch: Batch) -> Receipt:
        started = time.perf_counter()
        client = self._vetted_client()
        entries = [self._entry(batch.hook_id, index, event) for index, event in enumerate(batch.events)]
        sent: dict[int, str] = {}  # event index -> SQS MessageId
        failed: dict[int, dict[str, Any]] = {}
        calls = _chunks(entries)
        deadline = time.monotonic() + self.settings.HOOK_HTTP_TIMEOUT_SEC
        while calls:
            if time.monotonic() > deadline:  # one attempt stays within its lease however slow each call is
                raise TargetUnreachable(
                    f"{self._where()}: {len(sent)} of {len(entries)} sent when the attempt's "
                    f"{self.settings.HOOK_HTTP_TIMEOUT_SEC:g} s ran out", delivered=frozenset(sent))
            chunk = calls.pop(0)
            try:
                answer = client.send_message_batch(QueueUrl=str(self.config.queue_url), Entries=chunk)
            except bex.ClientError as exc:
                if not _refuses_content(exc):
                    raise translate(exc, self._where(), frozenset(sent)) from exc
                if len(chunk) > 1:
                    # SQS refused the whole call for one message's content: find it, send the others.
                    calls[:0] = [[entry] for entry in chunk]
                    continue
                error = exc.response.get("Error", {})
                answer = {"Failed": [{"Id": chunk[0]["Id"], "SenderFault": True, "Code": error.get("Code", ""),
                                      "Message": error.get("Message", "")}]}
            except AWS_ERRORS as exc:
                raise translate(exc, self._where(), frozenset(sent)) from exc
            sent.update((int(ok["Id"]), ok["MessageId"]) for ok in answer.get("Successful", []))
            failed.update((int(bad["Id"]), bad) for bad in answer.get("Failed", []))
        if failed:
            raise self._failure(failed, frozenset(sent), len(entries))
        return Receipt(
            latency_ms=(time.perf_counter() - started) * 1000,
            payload=[
                {"message_id": sent[i], "attributes": _attributes_shown(e), "body": event,
                 **{k: e[k] for k in ("MessageGroupId", "MessageDeduplicationId") if k in e}}
                for i, (e, event) in enumerate(zip(entries, batch.events, strict=True))
            ],
            details={"messages": len(entries)},
        )

    def _entry(self, hook_id: int, index: int, event: dict[str, Any]) -> dict[str, Any]:
        attributes = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in (
                ("event_id", str(event.get("event_id", ""))),
                ("hook_id", str(hook_id)),
                ("event_type", str(event.get("event_type", ""))),
            )
            if value  # SQS refuses an empty attribute value
        }
        entry: dict[str, Any] = {"Id": str(index), "MessageBody": dumps(event).decode(),
                                 "MessageAttributes": attributes}
        if self.config.fifo:
            entry["MessageDeduplicationId"] = _bounded_id(str(event.get("event_id", "")))
            entry["MessageGroupId"] = _bounded_id(self.templates["message_group_id"].render(event)) or _DEFAULT_GROUP
        return entry

    def _where(self) -> str:
        return f"SQS {self.config.queue_url}"

    def _failure(self, failed: dict[int, dict[str, Any]], delivered: frozenset[int], total: int) -> DeliveryError:
        first = next(iter(failed.values()))
        text = (f"{self._where()}: {len(failed)} of {total} message(s) failed: "
                f"{first.get('Code', '')}: {first.get('Message', '')}")
        if all(bad.get("SenderFault") for bad in failed.values()):
            return PayloadError(text, delivered=delivered)
        return TargetRejected(text, delivered=delivered)


def _refuses_content(exc: bex.ClientError) -> bool:
    """Whether SQS refused a call for what a message holds (size, characters), not for the queue or the caller."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code.rpartition(".")[2] in _CONTENT_CODES


def _chunks(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Entries cut into calls of at most 10 and at most 256 KiB (a larger single entry goes alone)."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_size = len(entry["MessageBody"].encode()) + sum(
            len(name) + len(a["StringValue"].encode()) + len(a["DataType"]) for name, a in
            entry["MessageAttributes"].items())
        if current and (len(current) == _ENTRIES_PER_CALL or size + entry_size > _BYTES_PER_CALL):
            chunks.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks


def _bounded_id(value: str) -> str:
    """A dedup or group id SQS takes (at most 128 visible ASCII characters): any other value is
    replaced by its SHA-256, so the same value still gives the same id."""
    if len(value) <= _ID_MAX and _VISIBLE_ASCII.match(value):
        return value
    return hashlib.sha256(value.encode()).hexdigest() if value else ""


def _attributes_shown(entry: dict[str, Any]) -> dict[str, str]:
    return {name: a["StringValue"] for name, a in entry["MessageAttributes"].items()}

from __future__ import annotations

import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from actionhooks.delivery.config import new_signing_secret
from actionhooks.delivery.signing import sign

BODY = b'[{"event_type":"open","custom_data":{"name":"J\xc3\xbcrgen"}}]'


def headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_a_signature_verifies_with_the_standard_webhooks_reference_library() -> None:
    secret = new_signing_secret()
    now = int(time.time())
    signature = sign(secret, "batch-1", now, BODY)
    assert signature.startswith("v1,")
    Webhook(secret).verify(BODY, headers("batch-1", now, signature))


def test_an_unpadded_secret_signs_like_the_reference_library_reads_it() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"[:-2]  # 32 base64 chars minus 2: needs padding
    now = int(time.time())
    Webhook(secret).verify(BODY, headers("b", now, sign(secret, "b", now, BODY)))


@pytest.mark.parametrize(
    ("msg_id", "body", "secret"),
    [
        ("batch-2", BODY, None),  # another message id
        ("batch-1", BODY + b" ", None),  # a changed body
        ("batch-1", BODY, new_signing_secret()),  # another hook's secret
    ],
    ids=["another-id", "another-body", "another-secret"],  # fixed: xdist workers must collect the same ids
)
def test_a_signature_does_not_verify_for_another_id_body_or_secret(
    msg_id: str, body: bytes, secret: str | None
) -> None:
    own_secret = new_signing_secret()
    now = int(time.time())
    signature = sign(secret or own_secret, "batch-1", now, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(own_secret).verify(body, headers(msg_id, now, signature))


def test_the_timestamp_is_part_of_what_is_signed() -> None:
    secret = new_signing_secret()
    now = int(time.time())
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers("b", now, sign(secret, "b", now - 1, BODY)))


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsec_not*base64!", "not valid base64"),
        ("whsec_", "empty key"),
    ],
)
def test_an_unusable_secret_is_refused_with_a_clear_message(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sign(secret, "b", 0, BODY)

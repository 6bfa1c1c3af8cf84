"""HTTPS delivery end to end: a batch goes to a loopback receiver whose certificate a test CA issued,
trusted as a user trusts a private CA (SSL_CERT_FILE names a bundle holding it); a certificate no trusted
CA issued, or one for another host name, fails the attempt with an error that says so, and the receiver
gets nothing."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
import trustme

from actionhooks.errors import TargetUnreachable
from tests.delivery.conformance import sample_batch
from tests.delivery.test_http import http
from tests.support.receiver import Receiver


@pytest.fixture
def trusted_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """A new CA, trusted by the delivery client as a user trusts one: SSL_CERT_FILE names a bundle that
    holds it (httpx.create_ssl_context reads it when a pool makes its first TLS connection)."""
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return ca


@contextmanager
def https_receiver(cert: trustme.LeafCert) -> Iterator[Receiver]:
    """A recording receiver at https://localhost:PORT/hook presenting `cert`; stopped afterwards."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    receiver = Receiver(tls=context)
    try:
        yield receiver
    finally:
        receiver.close()


def test_a_batch_is_delivered_over_https_to_a_receiver_whose_ca_is_trusted(trusted_ca: trustme.CA) -> None:
    batch = sample_batch(3)
    with https_receiver(trusted_ca.issue_cert("localhost")) as receiver, http(receiver.url) as transport:
        receipts = [transport.send(batch) for _ in range(2)]  # the second on the kept-alive TLS connection
        requests = receiver.wait_for(2)
    assert receiver.url.startswith("https://localhost:")
    assert [receipt.status_code for receipt in receipts] == [200, 200]
    assert [orjson.loads(request.body) for request in requests] == [batch.events, batch.events]
    assert requests[0].headers["webhook-id"] == batch.batch_id


@pytest.mark.parametrize(
    ("issuer", "name", "why"),
    [
        ("another CA", "localhost", "unable to get local issuer certificate"),
        ("the trusted CA", "receiver.example", "Hostname mismatch"),
    ],
    ids=["untrusted-certificate", "host-name-mismatch"],
)
def test_a_certificate_that_does_not_verify_fails_the_attempt_saying_why_and_delivers_nothing(
    trusted_ca: trustme.CA, issuer: str, name: str, why: str
) -> None:
    ca = trusted_ca if issuer == "the trusted CA" else trustme.CA()
    with https_receiver(ca.issue_cert(name)) as receiver, http(receiver.url) as transport:
        with pytest.raises(TargetUnreachable) as caught:
            transport.send(sample_batch(1))
        assert receiver.requests == []
    message = caught.value.message
    assert f"TLS with localhost:{receiver.port}" in message
    assert "certificate verify failed" in message
    assert why in message

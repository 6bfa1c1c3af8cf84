from __future__ import annotations

import ipaddress
import socket
import ssl
from typing import Any

import pytest

from actionhooks.delivery.config import HttpDelivery
from actionhooks.delivery.http import HttpTransport
from actionhooks.delivery.ssrf import forbidden_reason
from actionhooks.errors import TargetForbidden, TargetUnreachable
from actionhooks.settings import Settings
from tests.delivery.conformance import sample_batch
from tests.support.receiver import Receiver

GUARDED = Settings()  # HOOK_ALLOW_PRIVATE_TARGETS is false by default
PUBLIC = "93.184.215.14"


def transport(url: str, settings: Settings = GUARDED) -> HttpTransport:
    return HttpTransport(HttpDelivery.model_validate({"type": "http", "url": url}), settings)


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connect the transport makes, recorded and refused: no packet leaves the machine."""
    seen: list[tuple[str, int]] = []

    def create_connection(address: tuple[str, int], *_: Any, **__: Any) -> socket.socket:
        seen.append(address)
        raise ConnectionRefusedError("connects are stubbed in this test")

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return seen


def resolve_as(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> None:
    """Make `socket.getaddrinfo` answer for the given names (there is no DNS here)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in names:
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in names[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("fd00::1", "private"),
        ("fc00::1", "private"),
        ("::ffff:127.0.0.1", "IPv4-embedded loopback"),
        ("::ffff:10.0.0.1", "IPv4-embedded private"),
        ("::127.0.0.1", "IPv4-embedded loopback"),
        ("2002:7f00:1::", "IPv4-embedded loopback"),
        ("2002:a9fe:a9fe::", "IPv4-embedded link-local"),
        ("2002:0a00:0001::1", "IPv4-embedded private"),
        ("64:ff9b::7f00:1", "IPv4-embedded loopback"),
        ("64:ff9b::a9fe:a9fe", "IPv4-embedded link-local"),
        ("64:ff9b:1::c0a8:101", "IPv4-embedded private"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "IPv4-embedded loopback"),
        ("fec0::1", "site-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "private"),
    ],
)
def test_non_public_addresses_are_refused_with_the_reason(address: str, reason: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address",
    [PUBLIC, "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "100.128.0.1", "2002:808:808::1", "64:ff9b::808:808"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1 is not a public address (loopback)"),
        ("http://[::1]:8080/hook", "::1 is not a public address (loopback)"),
        ("http://10.0.0.5/hook", "10.0.0.5 is not a public address (private)"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address (link-local)"),
        ("http://100.64.1.1/hook", "100.64.1.1 is not a public address (carrier-grade NAT)"),
        ("http://[::ffff:127.0.0.1]/hook", "::ffff:7f00:1 is not a public address (IPv4-embedded loopback)"),
        ("https://localhost/hook", "localhost is not a public address;"),
    ],
)
def test_delivery_to_a_private_target_is_forbidden_before_any_connect(
    connects: list[tuple[str, int]], url: str, shown: str
) -> None:
    with transport(url) as guarded, pytest.raises(TargetForbidden) as caught:
        guarded.send(sample_batch(1))
    assert shown in caught.value.message
    assert "HOOK_ALLOW_PRIVATE_TARGETS" in caught.value.message
    assert not caught.value.retryable
    assert connects == []


def test_a_public_name_that_resolves_to_loopback_is_forbidden(
    monkeypatch: pytest.MonkeyPatch, connects: list[tuple[str, int]]
) -> None:
    resolve_as(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
    with transport("https://hooks.example.com/in") as guarded, pytest.raises(TargetForbidden) as caught:
        guarded.send(sample_batch(1))
    assert "hooks.example.com is not a public address;" in caught.value.message
    assert "127.0.0.1" not in caught.value.message  # what an internal name resolves to is not told
    assert connects == []


def test_a_name_with_one_private_address_among_public_ones_is_forbidden(
    monkeypatch: pytest.MonkeyPatch, connects: list[tuple[str, int]]
) -> None:
    resolve_as(monkeypatch, {"hooks.example.com": [PUBLIC, "10.0.0.7"]})
    with transport("https://hooks.example.com/in") as guarded, pytest.raises(TargetForbidden) as caught:
        guarded.send(sample_batch(1))
    assert "hooks.example.com is not a public address" in caught.value.message
    assert "10.0.0.7" not in caught.value.message
    assert connects == []


def test_the_connect_goes_to_the_vetted_address_not_to_the_name(
    monkeypatch: pytest.MonkeyPatch, connects: list[tuple[str, int]]
) -> None:
    # A rebinding resolver answers public first, loopback after: the name must be resolved once only.
    answers = iter([[PUBLIC], ["127.0.0.1"], ["127.0.0.1"]])
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in next(answers)],
    )
    with transport("http://hooks.example.com:8080/in") as guarded, pytest.raises(TargetUnreachable):
        guarded.send(sample_batch(1))
    assert connects == [(PUBLIC, 8080)]


def test_every_vetted_address_is_tried_in_turn(
    monkeypatch: pytest.MonkeyPatch, connects: list[tuple[str, int]]
) -> None:
    resolve_as(monkeypatch, {"hooks.example.com": ["2606:4700:4700::1111", PUBLIC]})
    with transport("http://hooks.example.com/in") as guarded, pytest.raises(TargetUnreachable):
        guarded.send(sample_batch(1))
    assert connects == [("2606:4700:4700::1111", 80), (PUBLIC, 80)]


def test_tls_still_checks_the_hostname_when_connecting_to_the_vetted_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolve_as(monkeypatch, {"hooks.example.com": [PUBLIC]})
    tls_names: list[str | None] = []
    connected: list[tuple[str, int]] = []
    listener = socket.create_server(("127.0.0.1", 0))  # stands in for the public address
    real_connect = socket.create_connection

    def create_connection(address: tuple[str, int], *_: Any, **__: Any) -> socket.socket:
        connected.append(address)
        return real_connect(listener.getsockname())

    def wrap_socket(self: ssl.SSLContext, sock: socket.socket, server_hostname: str | None = None, **_: Any) -> Any:
        tls_names.append(server_hostname)
        raise ssl.SSLError("TLS is stubbed in this test")

    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(ssl.SSLContext, "wrap_socket", wrap_socket)
    with transport("https://hooks.example.com/in") as guarded, pytest.raises(TargetUnreachable):
        guarded.send(sample_batch(1))
    listener.close()
    assert connected == [(PUBLIC, 443)]
    assert tls_names == ["hooks.example.com"]


def test_a_name_that_does_not_resolve_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, connects: list[tuple[str, int]]
) -> None:
    def no_dns(*_: Any, **__: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with transport("https://nowhere.example/in") as guarded, pytest.raises(TargetUnreachable) as caught:
        guarded.send(sample_batch(1))
    assert "cannot resolve nowhere.example" in caught.value.message
    assert caught.value.retryable
    assert connects == []


def test_with_private_targets_allowed_delivery_to_loopback_works(receiver: Receiver) -> None:
    with transport(receiver.url, Settings(HOOK_ALLOW_PRIVATE_TARGETS=True)) as open_transport:
        assert open_transport.send(sample_batch(1)).status_code == 200
    assert len(receiver.wait_for(1)) == 1


def test_with_the_guard_on_the_loopback_receiver_gets_nothing(receiver: Receiver) -> None:
    with transport(receiver.url) as guarded, pytest.raises(TargetForbidden):
        guarded.send(sample_batch(1))
    assert receiver.requests == []

"""The SSRF guard: refuse to connect to loopback, private and other non-public addresses.

Checking a URL's host before the request leaves a DNS-rebinding gap (the name resolves to a public
address for the check and to 127.0.0.1 for the connect). So the check lives in the one place that
cannot be fooled: the HTTP transport's connections are opened by `connect`, which resolves the name
itself, vets every address it got, and connects to a vetted address, not to the name. TLS still
runs against the hostname (delivery/http1.py passes it as SNI and for the certificate check), so
HTTPS keeps working.

Every address of a name must be public: a name with one private address among public ones is
refused, since the resolver's order would otherwise decide what we reach. Proxies are not used
for delivery (a proxy would make the proxy's address the one checked).
"""

from __future__ import annotations

import ipaddress
import socket
import time

from actionhooks.errors import TargetForbidden, TargetUnreachable

__all__ = ["connect", "connect_unguarded", "forbidden_reason", "vet_target", "vetted_addresses"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# Prefixes whose addresses carry an IPv4 address in their last 32 bits (NAT64: RFC 6052 well-known
# prefix and RFC 8215 local-use prefix): a gateway on the way turns them into that IPv4 address.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def forbidden_reason(address: IPAddress) -> str | None:
    """Why delivery to `address` is refused ("loopback", "private"…), or None for a public address.

    An IPv6 address that wraps an IPv4 one (IPv4-mapped, IPv4-compatible, 6to4 2002::/16, NAT64,
    Teredo) reaches that IPv4 address through a relay or a translator, so the IPv4 address is judged.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = forbidden_reason(embedded)
            return f"IPv4-embedded {reason}" if reason else None
        if address.is_site_local:  # fec0::/10: deprecated, still routed inside some networks
            return "site-local"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("carrier-grade NAT", isinstance(address, ipaddress.IPv4Address) and address in _CGNAT),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-global", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the IPv4-embedding kinds."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address; the server's is public by construction
    value = int(address)
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if value >> 32 == 0 and value > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(value)
    return None


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to a vetted address of `host` (never to the name: it is resolved once, here),
    within `timeout` seconds in all; the addresses are tried in the resolver's order.

    TargetForbidden when an address is not public; TargetUnreachable when the name does not resolve;
    the last address's OSError when none could be connected to."""
    *others, last = vetted_addresses(host, port)
    end = time.monotonic() + timeout
    for address in others:
        try:
            return socket.create_connection((str(address), port), timeout=max(end - time.monotonic(), 0.001))
        except OSError:
            continue  # the next address; the last one's failure is the one raised
    return socket.create_connection((str(last), port), timeout=max(end - time.monotonic(), 0.001))


def connect_unguarded(host: str, port: int, timeout: float) -> socket.socket:
    """`connect` for HOOK_ALLOW_PRIVATE_TARGETS: any address the name resolves to."""
    return socket.create_connection((host, port), timeout=timeout)


def vetted_addresses(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (never none), in resolver order, once all of them passed the guard.

    TargetForbidden when one is not public; TargetUnreachable when the name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnreachable(f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # An IPv6 sockaddr of a link-local address may carry a "%scope"; the address is what counts.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        reason = forbidden_reason(address)
        if reason:
            # A name's refusal says nothing of what it resolved to: a tenant must not map internal DNS.
            shown = f"{address} is not a public address ({reason})" if _is_literal(host) else (
                f"{host} is not a public address"
            )
            raise TargetForbidden(
                f"target {shown}; delivery to it is refused unless HOOK_ALLOW_PRIVATE_TARGETS is true"
            )
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetUnreachable(f"{host} resolved to no address")
    return addresses


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def vet_target(what: str, host: str, port: int, delivered: frozenset[int] = frozenset()) -> list[IPAddress]:
    """`vetted_addresses` for a broker transport, failing with our errors named after `what` ("Redis"...).

    A non-public address is TargetForbidden (never retried); a name that does not resolve is
    TargetUnreachable (retried like any connection failure). `delivered` carries what an attempt
    already delivered before it had to reconnect.
    """
    try:
        return vetted_addresses(host, port)
    except TargetForbidden as exc:
        raise TargetForbidden(f"{what} {exc.message}", delivered=delivered) from exc
    except TargetUnreachable as exc:
        raise TargetUnreachable(f"{what} {host}:{port}: {exc.message}", delivered=delivered) from exc

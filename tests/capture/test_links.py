"""Redirect targets: never open (hostile targets refused before any host comparison), look-alikes never match."""

from __future__ import annotations

import pytest

from actionhooks.capture.links import UnsafeTarget, check_target, host_allowed, sign_link, signature_valid

ALLOWED = ["shop.example", "*.shop.example"]


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/",
        "///evil.example/",
        "/\\evil.example/",
        "https:\\\\evil.example",
        "https:/evil.example",
        "https:evil.example",
        "https://shop.example@evil.example/",
        "https://shop.example%40evil.example/",
        "https://evil.example\\@shop.example/",
        "https://shop.example\t.evil.example/",
        "https://shop.example\n/",
        "https:// shop.example/",
        "https://evil.example:99999/",
        "https://[::1/",
        "ftp://shop.example/",
        "",
        "https://" + "a" * 2048 + ".example/",
        "https://\u0455hop.example/",  # Cyrillic dze: a homograph, not the allowed host
    ],
)
def test_hostile_targets_are_refused(target: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(target)


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("https://shop.example/cart?x=1", True),
        ("HTTP://SHOP.EXAMPLE./", True),
        ("https://www.shop.example/", True),
        ("https://a.b.shop.example:8443/", True),
        ("https://shop.example.evil.example/", False),
        ("https://evilshop.example/", False),
        ("https://shop.example-evil.example/", False),
        ("https://xshop.example/", False),
        ("https://example/", False),
        ("https://[2001:db8::1]/", False),
    ],
)
def test_only_allow_listed_hosts_and_their_subdomains_match(target: str, allowed: bool) -> None:
    assert host_allowed(check_target(target), ALLOWED) is allowed


def test_a_wildcard_does_not_match_its_apex_and_an_exact_host_not_its_subdomains() -> None:
    assert not host_allowed("shop.example", ["*.shop.example"])
    assert not host_allowed("www.shop.example", ["shop.example"])


def test_a_signature_covers_every_parameter_and_the_secret() -> None:
    items = [("to", "https://x.example/"), ("campaign_id", "5")]
    sig = sign_link("secret-one-0123456789", items)
    assert signature_valid("secret-one-0123456789", list(reversed(items)), sig)  # order does not matter
    assert not signature_valid("secret-two-0123456789", items, sig)
    assert not signature_valid("secret-one-0123456789", [*items, ("x", "1")], sig)
    assert not signature_valid("secret-one-0123456789", [items[0], ("campaign_id", "6")], sig)
    assert not signature_valid("secret-one-0123456789", items, sig[:-1] + "é")

"""Which Host and Origin headers ``/mcp`` answers, by the address ``metaagent serve`` is bound to
(the SDK's DNS-rebinding protection; the real server's 421 is in test_mcp_http)."""

from __future__ import annotations

from metaagent.mcp.http import transport_security


def test_loopback_answers_loopback_names_only() -> None:
    sec = transport_security("127.0.0.1")
    assert sec.enable_dns_rebinding_protection
    assert sec.allowed_hosts == ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    assert "http://localhost:*" in sec.allowed_origins


def test_a_named_host_is_added_to_loopback() -> None:
    sec = transport_security("build-box.internal")
    assert sec.enable_dns_rebinding_protection
    assert {"build-box.internal", "build-box.internal:*", "localhost:*"} <= set(sec.allowed_hosts)
    assert "https://build-box.internal" in sec.allowed_origins


def test_an_ipv6_address_is_bracketed() -> None:
    sec = transport_security("fd00::5")
    assert "[fd00::5]:*" in sec.allowed_hosts


def test_every_interface_leaves_the_token_as_the_guard() -> None:
    for host in ("0.0.0.0", "::"):
        assert not transport_security(host).enable_dns_rebinding_protection

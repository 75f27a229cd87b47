"""Which addresses count as one client, for every per-client limit (leases, logins)."""

from __future__ import annotations

import ipaddress


def client_network(address: str | None) -> str:
    """The unit a per-client limit counts: one IPv4 address, or an IPv6 /64 (one subscriber's
    network: each of its 2^64 addresses must not be a fresh client). An IPv4 address written
    as IPv6 (::ffff:1.2.3.4, as some proxies forward it) is that IPv4 address."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return str(address)
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)

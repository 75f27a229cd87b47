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


def is_public(client: str) -> bool:
    """Whether a client (client_network's) is a public address. A private or loopback one is a
    proxy, a NAT or a container's gateway of the site's own in front of the daemon (Docker's
    172.17.0.1, a Kubernetes node, a layer-4 balancer, trusted_proxies not set): the visitors
    behind it are many, and a cap meant for one visitor would bind them all."""
    try:
        return ipaddress.ip_network(client, strict=False).network_address.is_global
    except ValueError:
        return False

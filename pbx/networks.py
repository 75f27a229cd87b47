"""Addresses and networks as the config writes them and peers arrive: who may tell us a
visitor's address (http.trusted_proxies), who may ask the FastAGI server (asterisk.agi)."""

from __future__ import annotations

import functools
import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def valid_networks(values: list[str]) -> list[str]:
    """`values` stripped, each an address or a network (10.0.0.0/8); a ValueError naming the
    first that is neither (a host name: where it leads is the resolver's, at any time)."""
    for value in values:
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(
                f"expected an IP address or a network like 10.0.0.0/8, got {value!r}"
            ) from None
    return [value.strip() for value in values]


def parse_address(text: str) -> Address | None:
    """An address as a peer or a header writes it; an IPv4 mapped into IPv6 (a dual-stack
    socket's ::ffff:10.0.0.1) as the IPv4 it is. A port some proxies add (Azure's Application
    Gateway: 203.0.113.7:50312, [2001:db8::7]:443) is left out."""
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.cache
def networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    """The networks of config values checked by valid_networks (parsed once per config)."""
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def within(address: Address, among: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in among)

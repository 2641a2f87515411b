"""Which destination addresses jobs may not reach unless the operator allows private ones.

Loopback, RFC 1918 private, shared (CGNAT), link-local, unspecified and multicast addresses,
and their IPv6 counterparts (unique-local, link-local): the node itself, its Docker bridges
and its local network. Other special ranges are let through on purpose: a TLS-intercepting
network (like the one this project is developed on) may resolve public names into them.
"""

from __future__ import annotations

import ipaddress

INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)


def is_internal(address: str) -> bool:
    """Whether ``address`` (an IP literal) points into the node or its local networks."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in INTERNAL_NETWORKS)

"""Source networks: a system may be bound to the networks it connects from.

A system with networks registered is refused (403 ``source_network_forbidden``) when its
request's peer address lies outside all of them, however valid its credential: a stolen
token or VXP secret is then of no use from elsewhere. No networks: any address. The
peer is the TCP peer; behind a proxy that is the proxy, so bind at the proxy instead.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from hub.errors import InputError, NetworkForbidden
from hub.records import System

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalise(values: Iterable[str]) -> tuple[str, ...]:
    """CIDR texts as the directory keeps them (``10.1.0.0/16``, a bare address as /32 or
    /128), sorted and without repeats; ``InputError`` for anything else."""
    out: set[str] = set()
    for value in values:
        try:
            out.add(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError as exc:
            raise InputError(
                f"{value!r} is not a network (CIDR like 10.1.0.0/16, or one address)",
                code="bad_network",
            ) from exc
    return tuple(sorted(out))


@functools.lru_cache(maxsize=1024)
def _parsed(networks: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n) for n in networks)


def _address(peer: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not peer:
        return None
    try:
        addr = ipaddress.ip_address(peer.split("%", 1)[0])  # no IPv6 zone
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return addr


def check_peer(system: System, peer: str | None) -> None:
    """Refuse a request of ``system`` from ``peer`` outside its networks (if it has any)."""
    if not system.networks:
        return
    addr = _address(peer)
    if addr is None or not any(addr in n for n in _parsed(system.networks)):
        raise NetworkForbidden(
            f"system {system.system_id} may not connect from {peer or 'an unknown address'}",
            details={"peer": peer},
        )

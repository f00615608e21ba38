"""Who a connection belongs to, and how many connections one client may hold.

The client of a request is the peer that connected, unless that peer is a proxy
the deployment trusts (``FORWARDED_ALLOW_IPS``, which gunicorn reads too) and the
request carries ``X-Forwarded-For``: then it is the right-most address of that
header that is not itself a trusted proxy. Every trusted proxy appends the
address it received the request from, so everything right of that point was
written by a trusted hop, and everything left of it by the client, who may write
anything there. ``*`` trusts every peer but no address it forwards: the client is
then the right-most entry, the one the peer itself wrote.

``ClientTally`` counts what each client holds in one web process, up to a cap:
its connections, and the bytes of its request bodies in flight. An IPv6 client
counts by its /64 network (``count_key``): one host or site is given a whole /64
and can pick any address inside it for each connection.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TrustedProxies:
    """``FORWARDED_ALLOW_IPS``: comma-separated addresses and CIDR networks, or ``*``."""

    def __init__(self, networks: Iterable[IPNetwork] = (), *, everyone: bool = False):
        self.networks = tuple(networks)
        self.everyone = everyone
        self._known: dict[str, bool] = {}  # the same few proxies ask again and again

    @classmethod
    def parse(cls, spec: str) -> TrustedProxies:
        """Raises ``ValueError`` naming the first entry that is neither an address nor a network."""
        entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
        if "*" in entries:
            return cls(everyone=True)
        networks = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is neither an IP address nor a CIDR network") from None
        return cls(networks)

    def __contains__(self, address: str) -> bool:
        if self.everyone:
            return True
        known = self._known.get(address)
        if known is None:
            ip = parse_ip(address)
            known = ip is not None and any(ip in network for network in self.networks
                                           if network.version == ip.version)
            if len(self._known) < 4096:
                self._known[address] = known
        return known


def parse_ip(text: str) -> IPAddress | None:
    """An address as written by a peer or a proxy: bare, ``[v6]``, ``v4:port`` or ``[v6]:port``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:  # a dual-stack socket's view of an IPv4 client
        return ip.ipv4_mapped
    return ip


def client_address(peer: str, forwarded_for: str | None, trusted: TrustedProxies) -> str:
    """The client's address: ``peer``, or from ``X-Forwarded-For`` when ``peer`` is trusted.

    ``forwarded_for`` is every ``X-Forwarded-For`` value of the request, joined with
    commas. An entry that is not an address ends the walk: the hop right of it (which
    is trusted) is then the client, since a trusted proxy would not have written it.
    """
    if not forwarded_for or peer not in trusted:
        return peer
    if trusted.everyone:
        # ``*`` trusts the peer, not whoever it names: an address the client wrote left of the
        # peer's own entry would pass as trusted too (nginx's $proxy_add_x_forwarded_for keeps
        # the client's header), so only the entry the peer wrote, the right-most, names the client.
        ip = parse_ip(forwarded_for.rsplit(",", 1)[-1])
        return peer if ip is None else str(ip)
    client = peer
    for entry in reversed(forwarded_for.split(",")):
        ip = parse_ip(entry)
        if ip is None:
            return client
        client = str(ip)
        if client not in trusted:
            return client
    return client  # every hop trusted: the left-most is as far as anyone can tell


@functools.lru_cache(maxsize=4096)  # the same clients come again and again; parsing costs more than a request
def count_key(address: str) -> str:
    """What the per-address caps count: the address, or an IPv6 address's /64."""
    ip = parse_ip(address)
    if ip is None:
        return address
    if ip.version == 6:
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class ClientTally:
    """What each client (``count_key``) holds in this process: connections, or body bytes.
    Used by the worker's main thread only."""

    def __init__(self, cap: int):
        self.cap = cap
        self._held: dict[str, int] = {}

    def acquire(self, key: str, amount: int = 1) -> bool:
        """Count ``amount`` more for ``key``, unless that would take it past ``cap``."""
        held = self._held.get(key, 0) + amount
        if held > self.cap:
            return False
        self._held[key] = held
        return True

    def release(self, key: str, amount: int = 1) -> None:
        held = self._held.get(key, 0) - amount
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

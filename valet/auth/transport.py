"""Was the request received over HTTPS? (API keys are refused over plain HTTP unless allowed.)

The Python worker never sees the TCP peer. The rule, in order:

1. The *immediate peer* is the right-most address in ``X-Forwarded-For`` (the hop the platform front
   end recorded; ports and ``[]`` around IPv6 are stripped), else ``CLIENT-IP``; none or unparsable
   means "unknown", which is never trusted.
2. If the peer is in ``VALET_TRUSTED_PROXIES`` and sent ``X-Forwarded-Proto``, its right-most value
   decides (``https`` is secure, anything else is plain HTTP).
3. Otherwise the scheme of the request URL (as set by the Functions host) decides. ``http`` counts as
   plain HTTP even on loopback (``http://127.0.0.1``); only ``VALET_ALLOW_INSECURE_HTTP`` permits it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from .settings import ProxyNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse_ip(raw: str) -> IPAddress | None:
    value = raw.strip().strip('"')
    if value.startswith("["):  # [v6]:port
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def immediate_peer(headers: Mapping[str, str]) -> IPAddress | None:
    forwarded = headers.get("x-forwarded-for")
    if forwarded:
        return _parse_ip(forwarded.split(",")[-1])
    client_ip = headers.get("client-ip")
    return _parse_ip(client_ip) if client_ip else None


def is_secure(url: str, headers: Mapping[str, str], trusted_proxies: Sequence[ProxyNetwork]) -> bool:
    """``headers`` must be case-insensitive or lower-cased (``func.HttpRequest.headers`` is)."""
    peer = immediate_peer(headers)
    proto = headers.get("x-forwarded-proto")
    if proto and peer is not None and any(peer in net for net in trusted_proxies):
        return proto.split(",")[-1].strip().lower() == "https"
    return urlsplit(url).scheme.lower() == "https"


def client_address(headers: Mapping[str, str], trusted_proxies: Sequence[ProxyNetwork]) -> str:
    """The address a request came from, for per-address budgets (never for authorization).

    ``X-Forwarded-For`` is read from the right: the right-most entry is the immediate peer (as above);
    while that hop is in ``VALET_TRUSTED_PROXIES``, the entry to its left is what it saw, and so on. The
    first untrusted hop is the client (a client can put anything to the left of it, so nothing further
    left counts). Without ``X-Forwarded-For``, ``CLIENT-IP``; with neither, ``"unknown"`` (one shared
    budget). IPv6 clients count per /64, the block one subscriber usually holds.
    """
    forwarded = headers.get("x-forwarded-for")
    hops = [_parse_ip(part) for part in forwarded.split(",")] if forwarded else []
    if not hops:
        client_ip = headers.get("client-ip")
        hops = [_parse_ip(client_ip)] if client_ip else []
    chosen: IPAddress | None = None
    for hop in reversed(hops):
        chosen = hop
        if hop is None or not any(hop in net for net in trusted_proxies):
            break
    if chosen is None:
        return "unknown"
    if isinstance(chosen, ipaddress.IPv6Address) and chosen.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((chosen, 64), strict=False))
    return str(chosen.ipv4_mapped or chosen) if isinstance(chosen, ipaddress.IPv6Address) else str(chosen)

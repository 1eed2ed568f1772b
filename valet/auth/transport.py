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

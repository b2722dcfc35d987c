"""Requests to URLs a user typed (budget webhooks; provider API base URLs in production): no
server-side request forgery (issue 16 §4).

Rules (OWASP ASVS 4.0 V12.6.1 / the OWASP SSRF Prevention Cheat Sheet, "Application layer":
allow-list the scheme, resolve the name and refuse internal addresses, do not follow redirects):

* https only in production (http allowed in development, for a local receiver);
* the host is resolved and EVERY address it resolves to must be globally routable: loopback,
  private (RFC 1918, fc00::/7), link-local (169.254/16 — cloud metadata at 169.254.169.254 —
  and fe80::/10), CGNAT 100.64/10, unspecified, multicast, reserved, and IPv4 embedded in IPv6
  (::ffff:a.b.c.d, 6to4, Teredo) are refused, as is AWS's IPv6 metadata address fd00:ec2::254;
* the request connects to the address that was checked (the Host header and TLS SNI carry the
  name), so a DNS answer that changes between check and connect (rebinding) is not followed;
* redirects are never followed (a 3xx is a failed delivery), short timeouts.

Hosts listed in ``OUTBOUND_ALLOWED_HOSTS`` (an operator's own receiver) skip the address check.
Tests stub the resolver with ``settings.OUTBOUND_RESOLVER`` (a callable host -> [addresses]).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 3.0
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
            ipaddress.ip_address("100.100.100.200")}  # AWS/GCP/Azure, AWS IPv6, Alibaba


class OutboundRefused(ValueError):
    """The URL may not be requested; the message says why, in words for the user."""


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    host: str
    address: str  # the checked address the request connects to


def _resolver() -> Callable[[str], list[str]]:
    stub = settings.OUTBOUND_RESOLVER
    if stub is not None:
        return stub

    def resolve(host: str) -> list[str]:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        return sorted({info[4][0] for info in infos})

    return resolve


def address_problem(raw: str) -> str | None:
    """Why connecting to this address is refused, or None for a public address."""
    try:
        ip = ipaddress.ip_address(raw.split("%")[0])
    except ValueError:
        return f"{raw} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if embedded is not None:
                return address_problem(str(embedded)) or None
    if ip in METADATA:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private or not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return "a private or reserved address"
    return None


def check_outbound_url(url: str, *, require_https: bool | None = None) -> CheckedUrl:
    """Validate ``url`` under the rules above and return it with the address to connect to.
    Raises OutboundRefused."""
    if require_https is None:
        require_https = bool(settings.PRODUCTION)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused("Not a valid URL.") from None
    allowed = ("https",) if require_https else ("https", "http")
    if parts.scheme not in allowed:
        raise OutboundRefused("Use an https:// URL." if require_https else "Use an http:// or https:// URL.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise OutboundRefused("The URL has no host.")
    if parts.username or parts.password:
        raise OutboundRefused("Credentials in the URL are not allowed; use the signing secret.")
    if port is not None and not 1 <= port <= 65535:
        raise OutboundRefused("Not a valid port.")
    if host in {h.lower() for h in settings.OUTBOUND_ALLOWED_HOSTS}:
        return CheckedUrl(url=url, host=host, address=host)
    try:
        addresses = [str(ipaddress.ip_address(host))]  # an address literal needs no resolving
    except ValueError:
        addresses = None
    try:
        addresses = addresses or _resolver()(host)
    except (OSError, UnicodeError):
        raise OutboundRefused(f"{host} does not resolve.") from None
    if not addresses:
        raise OutboundRefused(f"{host} does not resolve.")
    for address in addresses:
        why = address_problem(address)
        if why:
            raise OutboundRefused(f"{host} resolves to {why} ({address}); only public addresses may be called.")
    return CheckedUrl(url=url, host=host, address=addresses[0])


def post_checked(checked: CheckedUrl, *, body: bytes, headers: dict[str, str]):
    """POST to the checked address (Host and SNI carry the name): no re-resolution, no redirect,
    short timeouts. Returns the httpx.Response; raises httpx.HTTPError."""
    import httpx

    parts = urlsplit(checked.url)
    target = checked.address if ":" not in checked.address else f"[{checked.address}]"
    netloc = target + (f":{parts.port}" if parts.port else "")
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.hostname + (f":{parts.port}" if parts.port else "")
    timeout = httpx.Timeout(TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
    extensions = {"sni_hostname": checked.host} if parts.scheme == "https" else {}
    return httpx.post(pinned, content=body, headers={**headers, "Host": host_header}, timeout=timeout,
                      follow_redirects=False, extensions=extensions)

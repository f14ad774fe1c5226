"""The SSRF guard: where a webhook may be sent.

A URL is resolved and refused when any of its addresses is not a public unicast one
(loopback, private, link-local, shared, multicast, reserved, unspecified; IPv4-mapped
IPv6 addresses are judged by their IPv4 address). The sender then connects to the
address checked here, never resolving the name again, so a name that answers with a
public address to the check and a private one to the connection (DNS rebinding) gets
nowhere.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings


class AddressRefused(Exception):
    """The URL may not receive webhooks (scheme, host or address)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL: the Host header and the TLS server name
    port: int
    path: str  # path and query
    address: str  # the checked IP to connect to


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback)


def resolve(host: str, port: int) -> list[str]:
    """Every address the host name resolves to (an IP literal is itself)."""
    try:
        return [ipaddress.ip_address(host).compressed]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"{host} does not resolve: {exc}") from None
    found: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in found:
            found.append(address)
    if not found:
        raise AddressRefused(f"{host} does not resolve")
    return found


def check(url: str, *, allow_private: bool | None = None, require_https: bool | None = None) -> Target:
    """The target to connect to for `url`, or AddressRefused saying why not."""
    if allow_private is None:
        allow_private = settings.BUZZER_WEBHOOKS_ALLOW_PRIVATE
    if require_https is None:
        require_https = settings.BUZZER_WEBHOOKS_REQUIRE_HTTPS
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise AddressRefused("Only http and https URLs can receive webhooks.")
    if require_https and scheme != "https":
        raise AddressRefused("Webhook URLs must use https.")
    if parts.username or parts.password:
        raise AddressRefused("Put no credentials in a webhook URL; verify the signature instead.")
    host = parts.hostname
    if not host:
        raise AddressRefused("The URL has no host.")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise AddressRefused("The URL's port is not valid.") from None
    addresses = resolve(host, port)
    if not allow_private:
        refused = [a for a in addresses if not is_public(ipaddress.ip_address(a))]
        if refused:
            raise AddressRefused(f"{host} resolves to {refused[0]}, which is not a public address.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme=scheme, host=host, port=port, path=path, address=addresses[0])

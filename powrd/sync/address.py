"""The address policy for URLs powrd learned from events rather than from its config.

Relay hints, media URLs and (later) NIP-65 relay lists are written by whoever published
an event. Connecting to them as given would let any author make the daemon send
requests to the machine's loopback services or its LAN (server-side request forgery).
Every such URL therefore goes through :meth:`AddressPolicy.pin`:

1. The URL must be plain: an allowed scheme, a host, no userinfo, no fragment, at most
   :data:`MAX_URL_CHARS` characters, and no query string unless the caller allows one
   (media URLs may carry one; relay URLs may not: a relay is a place, not a request).
2. The host is put in the form the network client sends: IDNA-2008 A-labels, exactly
   as httpx encodes it (``ß.example`` is ``xn--zca.example``, not CPython's IDNA-2003
   ``ss.example``) — the name checked is the name used.
3. The name is resolved once. If any address it resolves to is not public (loopback,
   private, link-local, CGNAT, multicast, unspecified, reserved, or an IPv6 form that
   embeds such an IPv4 address), the URL is refused.
4. The caller connects to the checked address (:class:`Pinned`), sending the original
   host name in the ``Host`` header and as the TLS server name, so a DNS answer that
   changes between check and connect (rebinding) is never used.

Relay URLs from the config file are trusted as given and never pass through here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

__all__ = [
    "MAX_URL_CHARS",
    "AddressPolicy",
    "AddressRefused",
    "Pinned",
    "Resolve",
    "UnresolvableHost",
    "check_url",
    "is_public_address",
    "system_resolve",
]

MAX_URL_CHARS = 512
DEFAULT_PORTS = {"ws": 80, "http": 80, "wss": 443, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses the name stands for (IP literals as text).
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]

# IPv6 prefixes whose low 32 bits are an IPv4 address that a gateway or the kernel
# will reach: judged by that IPv4 address.
_EMBEDDING_IPV4 = (
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix
)
# Refused whatever follows: IPv4-compatible (deprecated, ::a.b.c.d), local-use NAT64
# (RFC 8215: a site's own translator, so it reaches the site), Teredo and 6to4 tunnels
# (their embedded IPv4 endpoints are chosen by whoever wrote the address).
_REFUSED_IPV6 = (
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("2001::/32"),
    ipaddress.IPv6Network("2002::/16"),
)


class AddressRefused(Exception):
    """The URL is not fetched, ever (until whatever named it changes)."""


class UnresolvableHost(Exception):
    """The host name did not resolve; a transient failure, worth retrying later."""


@dataclass(frozen=True, slots=True)
class Pinned:
    """A checked URL and the one address to connect to for it.

    Attributes:
        url: the URL as the client sends it: host in A-label form, lowercase scheme.
        scheme: ``ws``, ``wss``, ``http`` or ``https``.
        host: the host name (or IP literal, IPv6 without brackets) for the ``Host``
            header and the TLS server name.
        port: the TCP port.
        address: the checked IP address to connect to.
    """

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def host_header(self) -> str:
        """``Host`` header value: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def address_url(self) -> str:
        """``url`` with the host replaced by the pinned address (what httpx connects to)."""
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if ":" in self.address else self.address
        return urlunsplit((parts.scheme, f"{host}:{self.port}", parts.path, parts.query, ""))


def is_public_address(address: IPAddress) -> bool:
    """Whether ``address`` is a public unicast address on the global internet."""
    if isinstance(address, ipaddress.IPv6Address):
        # Site-local (fec0::/10) is deprecated but still routed inside some sites.
        if address.is_site_local or any(address in network for network in _REFUSED_IPV6):
            return False
        for network in _EMBEDDING_IPV4:
            if address in network:
                return is_public_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not (
        address.is_multicast
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
    )


def check_url(
    url: str, schemes: Collection[str], *, allow_query: bool = False
) -> tuple[str, str, int]:
    """Refuse what no learned URL may be; returns (URL as sent, host, port).

    The host is in the form the client sends (IDNA-2008 A-labels, as httpx encodes it;
    IPv6 without brackets), the scheme lowercase.

    Raises:
        AddressRefused: naming what is wrong.
    """
    if len(url) > MAX_URL_CHARS:
        raise AddressRefused(f"URL longer than {MAX_URL_CHARS} characters")
    if any(char.isspace() or ord(char) < 0x20 for char in url):
        raise AddressRefused("URL contains white space or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise AddressRefused(f"not a URL: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise AddressRefused(f"scheme {scheme!r} is not one of {', '.join(sorted(schemes))}")
    if "@" in parts.netloc:
        raise AddressRefused("URL carries a user name or password")
    if not allow_query and (parts.query or url.rstrip("#").endswith("?")):
        raise AddressRefused("URL carries a query string")
    if parts.fragment or url.endswith("#"):
        raise AddressRefused("URL carries a fragment")
    if not parts.hostname:
        raise AddressRefused("URL has no host")
    try:
        host = httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError) as error:
        raise AddressRefused(f"host {parts.hostname!r} is not a valid name: {error}") from None
    if not host:
        raise AddressRefused("URL has no host")
    if port == 0:
        raise AddressRefused("URL names port 0")
    port = DEFAULT_PORTS[scheme] if port is None else port
    bracketed = f"[{host}]" if ":" in host else host
    netloc = bracketed if parts.port is None else f"{bracketed}:{port}"
    sent = urlunsplit((scheme, netloc, parts.path, parts.query, ""))
    return sent, host, port


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host`` (TCP only)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise UnresolvableHost(f"cannot resolve {host}: {error.strerror or error}") from None
    return [str(info[4][0]) for info in infos]


class AddressPolicy:
    """Checks and pins learned URLs.

    Args:
        schemes: the URL schemes accepted (``ws``/``wss`` for relays, ``http``/``https``
            for media).
        allow_private: accept non-public addresses too (``[sync] allow_private_relays``
            for a LAN relay or tests). Everything else is still checked: scheme, query
            string, userinfo, and the connection is still pinned.
        resolve: the name resolver (tests inject a stub; the default asks the system).
        allow_query: accept URLs with a query string (media URLs).
    """

    def __init__(
        self,
        schemes: Collection[str],
        *,
        allow_private: bool = False,
        resolve: Resolve = system_resolve,
        allow_query: bool = False,
    ) -> None:
        self.schemes = frozenset(schemes)
        self.allow_query = allow_query
        self.allow_private = allow_private
        self._resolve = resolve

    def check(self, url: str) -> str:
        """The URL as it would be sent, or :class:`AddressRefused`; no name lookup."""
        return check_url(url, self.schemes, allow_query=self.allow_query)[0]

    async def pin(self, url: str) -> Pinned:
        """Check ``url``, resolve its host once, and choose the address to connect to.

        Raises:
            AddressRefused: the URL, or an address its host resolves to, is not allowed.
            UnresolvableHost: the name does not resolve (now).
        """
        sent, host, port = check_url(url, self.schemes, allow_query=self.allow_query)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            answers = await self._resolve(host, port)
            try:
                # A scope suffix (fe80::1%eth0) is link-local anyway: refused below.
                addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in answers]
            except ValueError as error:
                raise UnresolvableHost(f"{host} resolved to a non-address: {error}") from None
        if not addresses:
            raise UnresolvableHost(f"{host} resolved to no address")
        if not self.allow_private:
            for address in addresses:
                if not is_public_address(address):
                    raise AddressRefused(f"{host} is a non-public address ({address})")
        scheme = sent.split(":", 1)[0]
        return Pinned(sent, scheme, host, port, str(addresses[0]))

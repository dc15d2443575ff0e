"""Where TraceMem may connect: the one rule for every outbound destination (issue 13, item 5).

Webhook endpoints, Slack integrations and data sources name hosts that TraceMem connects to on
somebody's say-so; without a rule, a webhook URL or a DSN is a way to reach the cloud metadata
service or to probe the server's own network. The rule, checked when a destination is saved and
again on the resolved address each time a connection is opened (so a name that later resolves
elsewhere — DNS rebinding — gains nothing):

* link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata services are never allowed;
* loopback, private, carrier-grade NAT, unspecified, multicast and reserved addresses only when
  ``TRACEMEM_OUTBOUND_ALLOW`` lists them (networks, addresses, or host names);
* plain http only to a destination that list names; everything else must use https.

Addresses are normalised first (IPv4-mapped IPv6, decimal/octal/hex IPv4 such as 2130706433 or
0177.0.0.1). :func:`resolve` is the one name lookup ("what leaves the machine"); connections made
through :func:`http_client` and the data sources' ``hostaddr`` go to the address it returned and
this module checked, never to a second lookup's answer. Decisions: docs/security.md §9.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from tracemem_core.errors import InvalidArgument

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SETTING = "TRACEMEM_OUTBOUND_ALLOW"
# The embedded default and the test suite: the single machine's own receivers.
LOOPBACK_ALLOW = ["127.0.0.0/8", "::1"]

NEVER = "link-local/metadata"
_NEVER_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10"))
# Cloud metadata services outside link-local: AWS (IPv6), GCP (IPv6), Alibaba Cloud.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("fd00:ec2::254", "fd20:ce::254", "100.100.100.200")
)
_METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
# Refused unless TRACEMEM_OUTBOUND_ALLOW lists them; the first match names the address's kind.
_GUARDED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(network), label)
    for label, networks in (
        ("loopback", ("127.0.0.0/8", "::1/128")),
        ("unspecified", ("0.0.0.0/8", "::/128")),
        ("private", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")),
        ("carrier-grade NAT", ("100.64.0.0/10",)),
        ("multicast", ("224.0.0.0/4", "ff00::/8")),
        (
            "reserved",
            (
                "192.0.0.0/24",
                "192.0.2.0/24",
                "198.18.0.0/15",
                "198.51.100.0/24",
                "203.0.113.0/24",
                "240.0.0.0/4",
                "::/96",
                "100::/64",
                "2001::/23",
                "2001:db8::/32",
                "fec0::/10",
                "64:ff9b:1::/48",
            ),
        ),
    )
    for network in networks
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)
# What inet_aton reads as an IPv4 address (127.1, 2130706433, 0177.0.0.1, 0x7f.1): never a name.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")


class OutboundRefused(InvalidArgument):
    """A destination the rule refuses; ``details.rule`` says which part of it."""

    def __init__(self, message: str, *, field: str | None, rule: str, **details: Any) -> None:
        super().__init__(message, field=field, details={"rule": rule, **details})


@dataclass(frozen=True)
class Allowed:
    networks: tuple[IPNetwork, ...]
    hosts: frozenset[str]


def _host_name(value: str) -> str | None:
    """A host name in canonical form (lower case, no trailing dot, IDNA), or None if not one."""
    name = value.strip().rstrip(".").lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return name if _HOST_NAME.match(name) else None


@functools.lru_cache(maxsize=8)
def _parse_allowed(entries: tuple[str, ...]) -> Allowed:
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip()))
            continue
        except ValueError:
            pass
        name = None if "/" in entry else _host_name(entry)
        if name is None:
            raise ImproperlyConfigured(
                f"{SETTING}: {entry!r} is neither a network (10.0.0.0/8, ::1), an address nor a host name"
            )
        hosts.add(name)
    return Allowed(tuple(networks), frozenset(hosts))


def allowed() -> Allowed:
    """The parsed ``TRACEMEM_OUTBOUND_ALLOW`` (ImproperlyConfigured naming a bad entry)."""
    return _parse_allowed(tuple(getattr(settings, SETTING, [])))


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order: the one name lookup of every
    outbound connection (tests replace it to stand in for DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one in any spelling a resolver accepts, else None."""
    text = host.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(text.lower()):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4), which is where it ends up."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def kind_of(address: IPAddress) -> str | None:
    """What kind of non-public address this is (``NEVER`` for the never-allowed), None if public."""
    target = _embedded_ipv4(address)
    if target in _METADATA_ADDRESSES or any(target in n for n in _NEVER_NETWORKS):
        return NEVER
    for network, label in _GUARDED:
        if target.version == network.version and target in network:
            return label
    return None if target.is_global else "reserved"


def _listed(address: IPAddress, rules: Allowed) -> bool:
    target = _embedded_ipv4(address)
    return any(a.version == n.version and a in n for n in rules.networks for a in {address, target})


def _check_address(address: IPAddress, *, host: str, what: str, field: str | None, plaintext: bool) -> None:
    rules = allowed()
    shown = str(_embedded_ipv4(address))
    kind = kind_of(address)
    if kind == NEVER:
        raise OutboundRefused(
            f"{what} resolves to {shown}, a {NEVER} address, which is never allowed",
            field=field,
            rule="never_allowed",
            address=shown,
        )
    by_name = host in rules.hosts
    if by_name or _listed(address, rules):
        return
    if kind is not None:
        width = 32 if ":" not in shown else 128
        raise OutboundRefused(
            f"{what} resolves to {shown}, a {kind} address, which is refused unless {SETTING} lists it "
            f"(for example {shown}/{width})",
            field=field,
            rule="not_allowed",
            address=shown,
        )
    if plaintext:
        raise OutboundRefused(
            f"{what} uses plain http to {shown}, which is allowed only for destinations {SETTING} lists; "
            "use https",
            field=field,
            rule="plaintext",
            address=shown,
        )


def _normal_host(host: str, *, what: str, field: str | None) -> str:
    address = literal_address(host)
    if address is not None:
        return str(address)
    name = _host_name(host)
    if name is None:
        raise OutboundRefused(
            f"{what}: {host!r} is not a valid host name or address", field=field, rule="host"
        )
    if name in _METADATA_HOSTS:
        raise OutboundRefused(
            f"{what} names {name}, a cloud metadata service, which is never allowed",
            field=field,
            rule="never_allowed",
        )
    return name


def checked_addresses(
    host: str, port: int, *, what: str, field: str | None = None, plaintext: bool = False
) -> list[str]:
    """Resolve ``host`` once and check every address it has: the addresses to connect to.

    Raises :class:`OutboundRefused` if any address breaks the rule, ``OSError`` if the name does not
    resolve."""
    name = _normal_host(host, what=what, field=field)
    address = literal_address(name)
    addresses = [address] if address is not None else [ipaddress.ip_address(a) for a in resolve(name, port)]
    if not addresses:
        raise OSError(f"{name} has no address")
    for each in addresses:
        _check_address(each, host=name, what=what, field=field, plaintext=plaintext)
    return [str(a) for a in addresses]


def check_host(host: str, port: int, *, what: str, field: str | None, plaintext: bool = False) -> None:
    """Save-time check of a destination host. A name that does not resolve (yet) is accepted when
    it may be reached over TLS: it is checked again, on the address, each time it is used."""
    try:
        checked_addresses(host, port, what=what, field=field, plaintext=plaintext)
    except OSError:
        if plaintext and _host_name(host) not in allowed().hosts:
            raise OutboundRefused(
                f"{what} uses plain http to {host}, which does not resolve; plain http is allowed only for "
                f"destinations {SETTING} lists; use https",
                field=field,
                rule="plaintext",
            ) from None


def public_url(url: str) -> str:
    """scheme://host[:port]/path: the URL without the credentials or query it may carry."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def check_url(url: str, *, what: str, field: str) -> str:
    """Save-time check of an http(s) destination: the scheme, the host, every address it resolves
    to. Returns the URL unchanged; the refusal names the URL without credentials or query."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise OutboundRefused(f"{what} has an invalid port", field=field, rule="host") from None
    shown = f"{what} {public_url(url)}" if host else f"{what} {url[:100]!r}"
    if scheme not in ("http", "https") or not host:
        scheme_text = f"{scheme}://" if scheme else "a URL without http(s)://"
        raise OutboundRefused(
            f"{shown} must use https (or http to a destination {SETTING} lists); {scheme_text} is not allowed",
            field=field,
            rule="scheme",
        )
    default_port = 443 if scheme == "https" else 80
    check_host(host, port or default_port, what=shown, field=field, plaintext=scheme == "http")
    return url


# --- connecting: an httpx client whose connections go only to checked addresses -----------------

# httpx's timeouts bound each network operation, not the request: a receiver that sends a byte
# every second never trips a 5 s read timeout and can hold a request for as long as it likes. A
# deadline set around a request (:func:`deadline`) caps every connect, TLS handshake, write and
# read the request makes through :func:`http_client` by the time left, so the whole request ends
# when it runs out (as ``httpx.ConnectTimeout`` / ``ReadTimeout`` / ``WriteTimeout``).
_deadline: ContextVar[float | None] = ContextVar("tracemem_outbound_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Requests made through :func:`http_client` in this block end within ``seconds`` in total."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _within_deadline(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` for one network operation, shortened to what is left of the deadline."""
    at = _deadline.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the time allowed for the whole request ran out")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation honours the current :func:`deadline`."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _within_deadline(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _within_deadline(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        timeout = _within_deadline(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class CheckedBackend(httpcore.SyncBackend):
    """httpcore's network backend, resolving through :func:`resolve` and connecting only to
    addresses the rule allows, within the current :func:`deadline`. TLS and the Host header still
    use the URL's host name."""

    def __init__(self, *, plaintext: bool) -> None:
        self.plaintext = plaintext

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = checked_addresses(host, port, what=host, plaintext=self.plaintext)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve") from exc
        error: Exception = httpcore.ConnectError(f"{host} has no address to connect to")
        for address in addresses:
            try:
                connect_timeout = _within_deadline(timeout, httpcore.ConnectTimeout)
                stream = super().connect_tcp(address, port, connect_timeout, local_address, socket_options)
                return DeadlineStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error


class CheckedTransport(httpx.HTTPTransport):
    def __init__(self, *, plaintext: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # httpx builds its connection pool with the default backend; swap in the checked one.
        self._pool._network_backend = CheckedBackend(plaintext=plaintext)


def http_client(*, verify: ssl.SSLContext | bool = True, limits: httpx.Limits | None = None) -> httpx.Client:
    """An httpx client for outbound destinations: every connection checked (http ones stricter),
    redirects never followed, and no proxy from the environment (a proxy would resolve the name
    itself, after the check)."""
    options: dict[str, Any] = {
        "verify": verify,
        "limits": limits or httpx.Limits(max_connections=100, max_keepalive_connections=20),
    }
    tls = CheckedTransport(plaintext=False, **options)
    return httpx.Client(
        transport=tls,
        mounts={"http://": CheckedTransport(plaintext=True, **options), "https://": tls},
        follow_redirects=False,
        trust_env=False,
    )

"""What a data source's DSN may say: one network host, and only options that neither read files on
the server nor redirect the connection (issue 13, item 5).

libpq reads files named by a DSN (``passfile``, ``sslkey``, ``sslcert``, ``sslrootcert``,
``sslcrl``, ``service``/``servicefile``), passes ``options`` to the server as settings, and
connects wherever ``hostaddr``, a host list or a unix-socket path says. So the DSN is read against
an allow-list, and its host goes through the outbound rule (``tracemem_core.outbound``) when it
is saved and, on the resolved address, each time a connection is opened: libpq is then given that
address as ``hostaddr`` and never resolves the name itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from tracemem_core import outbound
from tracemem_core.errors import InvalidArgument

# Everything a DSN may set. The password is the one secret; the rest is what admins see afterwards.
ALLOWED_OPTIONS = (
    "host",
    "port",
    "dbname",
    "user",
    "password",
    "sslmode",
    "sslrootcert",  # only "system": the operating system's CA store, no file named by the DSN
    "sslnegotiation",
    "sslsni",
    "channel_binding",
    "require_auth",
    "connect_timeout",
    "application_name",
    "client_encoding",
    "target_session_attrs",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)
_ALLOWED_TEXT = ", ".join("sslrootcert=system" if o == "sslrootcert" else o for o in ALLOWED_OPTIONS)
_SECRET_OPTIONS = ("password",)


@dataclass(frozen=True)
class Dsn:
    params: dict[str, str]
    host: str
    port: int

    def display(self) -> str:
        """The DSN without its password: what admins see afterwards."""
        shown = {k: self.params[k] for k in ALLOWED_OPTIONS if k in self.params and k not in _SECRET_OPTIONS}
        return psycopg.conninfo.make_conninfo(**shown)


def _refuse(message: str, **details: str) -> InvalidArgument:
    return InvalidArgument(message, field="dsn", details=details)


def parse(dsn: str) -> Dsn:
    """Read a DSN (URI or ``key=value``) against the allow-list; errors never repeat the DSN."""
    try:
        raw = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        raise _refuse(
            "dsn is not a valid PostgreSQL connection string (postgresql://user:password@host:5432/db "
            "or 'host=... dbname=...')"
        ) from None
    params = {k: str(v) for k, v in raw.items() if v not in (None, "")}
    for option in params:
        if option not in ALLOWED_OPTIONS or (option == "sslrootcert" and params[option] != "system"):
            raise _refuse(
                f"dsn option {option} is not allowed; allowed: {_ALLOWED_TEXT} (options that read files "
                "on the server or redirect the connection are refused)",
                rule="dsn_option",
                option=option,
            )
    host = params.get("host", "")
    if not host:
        raise _refuse(
            "dsn must name a host (postgresql://user@db.example.com/db or host=db.example.com); unix "
            "sockets are not allowed",
            rule="host",
        )
    if "," in host:
        raise _refuse(f"dsn names several hosts ({host}); a data source connects to one host", rule="host")
    if host.startswith(("/", "@")):
        raise _refuse(f"dsn host {host} is a unix socket; name a network host", rule="host")
    port_text = params.get("port", "5432")
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise _refuse("dsn port must be one number from 1 to 65535", rule="host")
    return Dsn(params=params, host=host, port=int(port_text))


def _what(parsed: Dsn) -> str:
    return f"dsn host {parsed.host}"


def check(dsn: str) -> Dsn:
    """Save time: the DSN's options and its host's addresses (a name that does not resolve yet is
    checked when used)."""
    parsed = parse(dsn)
    outbound.check_host(parsed.host, parsed.port, what=_what(parsed), field="dsn")
    return parsed


def connect_kwargs(dsn: str) -> dict[str, str]:
    """Connect time: the DSN re-read against today's rules, and ``hostaddr`` set to the checked
    addresses, so libpq connects exactly there (and still uses the name for TLS).

    Raises ``InvalidArgument`` (a refused option or address) or ``OSError`` (the name does not
    resolve)."""
    parsed = parse(dsn)
    addresses = outbound.checked_addresses(parsed.host, parsed.port, what=_what(parsed), field="dsn")
    count = len(addresses)
    return {
        "host": ",".join([parsed.host] * count),
        "hostaddr": ",".join(addresses),
        "port": ",".join([str(parsed.port)] * count),
    }

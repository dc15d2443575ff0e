"""``GET /metrics`` (docs/contract/interfaces.md): Prometheus text, for a scraper holding the token or at an allowed address.

``TRACEMEM_METRICS_TOKEN``: a scraper sending ``Authorization: Bearer <token>`` is let in from
anywhere (Prometheus: ``authorization: {credentials: ...}``). ``TRACEMEM_METRICS_ALLOW``:
comma-separated networks or addresses let in without the token (the client address honours
``TRACEMEM_TRUSTED_PROXY_COUNT``). With neither, only loopback on the embedded default and nobody
in production: metrics name routes and agents' activity, so they are never public by default.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tracemem_core import metrics
from tracemem_site.web import client_ip

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"TRACEMEM_METRICS_ALLOW: {entry!r} is not a network or address (e.g. 10.0.0.0/8, 127.0.0.1)"
            ) from None
    return tuple(networks)


def allowed_networks() -> tuple[Network, ...]:
    return _networks(tuple(settings.TRACEMEM_METRICS_ALLOW))


def _token_ok(request: HttpRequest) -> bool:
    token = settings.TRACEMEM_METRICS_TOKEN
    if not token:
        return False
    scheme, _, offered = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode())


def _address_ok(request: HttpRequest) -> bool:
    address = client_ip(request)
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return any(ip in network for network in allowed_networks())


@require_GET
def metrics_endpoint(request: HttpRequest) -> HttpResponse:
    if not (_token_ok(request) or _address_ok(request)):
        response = HttpResponse(
            "metrics: send 'Authorization: Bearer <TRACEMEM_METRICS_TOKEN>' or scrape from an address in "
            "TRACEMEM_METRICS_ALLOW\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
        if settings.TRACEMEM_METRICS_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="tracemem-metrics"'
        return response
    return HttpResponse(generate_latest(metrics.exposition_registry()), content_type=CONTENT_TYPE_LATEST)

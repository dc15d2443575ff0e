"""Client ID metadata documents fetched under TraceMem's outbound rules (tracemem_site/outbound.py).

django-oauth-toolkit resolves an ``https://`` client_id by fetching it (its CIMD support); this
fetcher makes that request through the same checked client as webhooks (every address the name
resolves to must be public, or listed in ``TRACEMEM_OUTBOUND_ALLOW``; link-local and metadata
services never; no redirects; no proxy), within ``CIMD_FETCH_TIMEOUT_SECONDS`` in total, reading at
most ``CIMD_MAX_DOCUMENT_SIZE`` bytes. TLS is verified against the system trust store (which
``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` can point elsewhere). The document's redirect URIs must pass
the same rule as dynamically registered ones.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx
from oauth2_provider import cimd as dot_cimd
from oauth2_provider.settings import oauth2_settings

from oauth.conf import redirect_uri_problem
from tracemem_core import outbound, safejson


class OutboundMetadataFetcher:
    def fetch(self, client_id: str) -> tuple[dict[str, Any], int]:
        dot_cimd._validate_client_id_url(client_id)
        limit = int(oauth2_settings.CIMD_MAX_DOCUMENT_SIZE)
        try:
            with (
                outbound.deadline(float(oauth2_settings.CIMD_FETCH_TIMEOUT_SECONDS)),
                outbound.http_client(verify=ssl.create_default_context()) as client,
                client.stream(
                    "GET", client_id, headers={"Accept": "application/json, application/*+json"}
                ) as response,
            ):
                if response.status_code != 200:
                    raise dot_cimd.CIMDError(f"client_id document returned HTTP {response.status_code}")
                media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if media_type != "application/json" and not (
                    media_type.startswith("application/") and media_type.endswith("+json")
                ):
                    raise dot_cimd.CIMDError(f"client_id document is not JSON (Content-Type: {media_type!r})")
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise dot_cimd.CIMDError("client_id document exceeds the maximum allowed size")
                cache_control = response.headers.get("Cache-Control")
        except (httpx.HTTPError, outbound.OutboundRefused, OSError) as exc:
            raise dot_cimd.CIMDError(f"could not fetch client_id document: {exc}") from exc
        try:
            data = safejson.loads(body.decode("utf-8"))
        except safejson.JSONTooDeep as exc:
            raise dot_cimd.CIMDError(f"client_id document: {exc}") from None
        except ValueError as exc:  # UnicodeDecodeError included
            raise dot_cimd.CIMDError("client_id document is not valid JSON") from exc
        if not isinstance(data, dict):
            raise dot_cimd.CIMDError("client_id document must be a JSON object")
        for uri in data.get("redirect_uris") or []:
            problem = redirect_uri_problem(uri)
            if problem:
                raise dot_cimd.CIMDError(problem)
        return data, dot_cimd._effective_max_age(cache_control)

"""Where the OAuth door lives and what it accepts: every URL and rule in one place (docs/oauth.md).

The OAuth-protected MCP endpoint, its RFC 9728 metadata and the authorization server's issuer are
all derived from ``TRACEMEM_PUBLIC_URL`` (the URL clients reach TraceMem at), so the metadata's
``resource`` is exactly the URL a client was given. The issuer has a path (``/oauth``) so that its
RFC 8414 document lives at ``/.well-known/oauth-authorization-server/oauth`` and nothing OAuth is
published at the root, where clients of the key door ``/mcp`` would find it (docs/contract/surfaces.md).
"""

from __future__ import annotations

import fnmatch
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

MCP_PATH = "/oauth/mcp"
ISSUER_PATH = "/oauth"
PRM_PREFIX = "/.well-known/oauth-protected-resource"
ASM_PREFIX = "/.well-known/oauth-authorization-server"
# The one scope: act as the agent the person bound this client to, with every MCP tool.
SCOPE = "mcp"
SCOPES = {SCOPE: "Use TraceMem's MCP tools as the agent you choose, recording decisions under it"}

# Redirect URIs a client may register (DCR) or declare (CIMD) unless TRACEMEM_OAUTH_REDIRECT_URIS
# says otherwise: ChatGPT's connector callback, Claude's, and loopback callbacks on any port and path
# (Codex's `codex mcp login`, the MCP SDKs, desktop apps; RFC 8252 §7.3).
DEFAULT_REDIRECT_PATTERNS = [
    "https://chatgpt.com/connector_platform_oauth_redirect",
    "https://claude.ai/api/mcp/auth_callback",
    "http://127.0.0.1:*",
    "http://localhost:*",
    "http://[::1]:*",
]


def public_url() -> str:
    return str(settings.TRACEMEM_PUBLIC_URL).rstrip("/")


def mcp_url() -> str:
    """The OAuth MCP URL: the RFC 9728 ``resource`` and the audience every token is bound to."""
    return public_url() + MCP_PATH


def issuer() -> str:
    return public_url() + ISSUER_PATH


def resource_metadata_url() -> str:
    return public_url() + PRM_PREFIX + MCP_PATH


def server_metadata_url() -> str:
    return public_url() + ASM_PREFIX + ISSUER_PATH


def redirect_patterns() -> list[str]:
    return list(getattr(settings, "TRACEMEM_OAUTH_REDIRECT_URIS", None) or DEFAULT_REDIRECT_PATTERNS)


def _matches(uri: str, pattern: str) -> bool:
    # "http://127.0.0.1:*" covers every port and path on that host (the host check comes first).
    return fnmatch.fnmatchcase(uri, pattern)


def redirect_uri_problem(uri: Any) -> str | None:
    """Why a client may not use ``uri`` as a redirect URI, or None if it may.

    Redirect URIs must be https, or http to a loopback address (RFC 8252), and match one of
    ``TRACEMEM_OAUTH_REDIRECT_URIS`` (shell-style patterns)."""
    if not isinstance(uri, str) or not uri:
        return "each redirect URI must be a non-empty string"
    parts = urlsplit(uri)
    host = (parts.hostname or "").lower()
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if parts.fragment or parts.username or parts.password:
        return f"redirect URI {uri!r} must not carry a fragment or credentials"
    if not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        return f"redirect URI {uri!r} must use https (or http to a loopback address such as 127.0.0.1)"
    if not any(_matches(uri, pattern) for pattern in redirect_patterns()):
        return (
            f"redirect URI {uri!r} is not allowed on this server; the administrator can allow it in "
            "TRACEMEM_OAUTH_REDIRECT_URIS"
        )
    return None


def provider_settings(
    public: str, *, access_token_seconds: int = 3600, refresh_token_seconds: int = 30 * 86400
) -> dict[str, Any]:
    """django-oauth-toolkit's settings (``OAUTH2_PROVIDER``) for a server reached at ``public``."""
    return {
        "OAUTH2_VALIDATOR_CLASS": "oauth.validators.TraceMemValidator",
        "SCOPES": SCOPES,
        "DEFAULT_SCOPES": [SCOPE],
        # OAuth 2.1: authorization code with PKCE S256 only; no implicit, no password grant.
        "PKCE_REQUIRED": True,
        "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
        "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
        "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
        # Tokens are stored as SHA-256 checksums only.
        "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
        "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
        "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
        "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
        "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token"],
        "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["none", "client_secret_basic", "client_secret_post"],
        "OIDC_ISS_ENDPOINT": public.rstrip("/") + ISSUER_PATH,
        "ACCESS_TOKEN_EXPIRE_SECONDS": access_token_seconds,
        "REFRESH_TOKEN_EXPIRE_SECONDS": refresh_token_seconds,
        "ROTATE_REFRESH_TOKEN": True,
        "REFRESH_TOKEN_REUSE_PROTECTION": True,
        "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
        "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
        # Every authorization shows the consent page: it is where the agent is chosen.
        "REQUEST_APPROVAL_PROMPT": "force",
        "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
        "DCR_ENABLED": True,
        "DCR_REGISTRATION_PERMISSION_CLASSES": ("oauth2_provider.dcr.AllowAllDCRPermission",),
        "DCR_REGISTRATION_TOKEN_EXPIRE_SECONDS": 86400,
        "CIMD_ENABLED": True,
        "CIMD_METADATA_FETCHER": "oauth.cimd.OutboundMetadataFetcher",
        "RESOURCE_SERVER_TOKEN_RESOURCE_VALIDATOR": "oauth.validators.audience_is_oauth_mcp_url",
        "OAUTH2_PROTECTED_RESOURCE_NAME": "TraceMem",
    }

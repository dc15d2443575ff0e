"""django-oauth-toolkit's validator, narrowed to the one resource this authorization server serves.

Every token is audience-bound (RFC 8707) to the OAuth MCP URL: a ``resource`` naming anything else
is ``invalid_target``; a client that sends none (older clients) gets a token bound to it anyway, so
no token this server issues is valid for another resource, and none issued elsewhere is valid here.
"""

from __future__ import annotations

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors

from oauth import conf


def audience_is_oauth_mcp_url(request_uri: str, audiences: list[str]) -> bool:
    """RESOURCE_SERVER_TOKEN_RESOURCE_VALIDATOR: the token names the OAuth MCP URL exactly (the
    request's own URL may differ behind a proxy; the configured public URL is the audience)."""
    return conf.mcp_url() in (audiences or [])


def resource_problem(resources: list[str]) -> str | None:
    wrong = [r for r in resources if r != conf.mcp_url()]
    if wrong:
        return (
            f"the resource {wrong[0]!r} is not served by this authorization server; "
            f"ask for {conf.mcp_url()!r}"
        )
    return None


class TraceMemValidator(OAuth2Validator):
    def _check_and_set_request_resource(self, request: Any) -> None:
        super()._check_and_set_request_resource(request)
        resources = list(getattr(request, "resource", None) or [])
        problem = resource_problem(resources)
        if problem:
            raise errors.CustomOAuth2Error(error="invalid_target", description=problem, request=request)
        request.resource = resources or [conf.mcp_url()]

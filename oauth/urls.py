"""The OAuth door's URLs. Nothing OAuth is published at the root or for ``/mcp`` (docs/contract/surfaces.md)."""

from __future__ import annotations

from django.urls import include, path
from oauth2_provider import views as dot

from oauth import conf, views

# django-oauth-toolkit reverses its endpoints in the "oauth2_provider" namespace (metadata, errors).
protocol = (
    [
        path("authorize/", views.ConsentView.as_view(), name="authorize"),
        path("token/", dot.TokenView.as_view(), name="token"),
        path("revoke_token/", dot.RevokeTokenView.as_view(), name="revoke-token"),
        path("register/", views.RegistrationView.as_view(), name="dcr-register"),
        path(
            "register/<str:client_id>/",
            views.RegistrationManagementView.as_view(),
            name="dcr-register-management",
        ),
    ],
    "oauth2_provider",
)

urlpatterns = [
    path(conf.MCP_PATH.lstrip("/"), views.OAuthMCPView.as_view(), name="oauth-mcp"),
    path(
        (conf.PRM_PREFIX + conf.MCP_PATH).lstrip("/"),
        views.ProtectedResourceMetadataView.as_view(),
        name="oauth-resource-metadata",
    ),
    path(
        (conf.ASM_PREFIX + conf.ISSUER_PATH).lstrip("/"),
        views.ServerMetadataView.as_view(),
        name="oauth-server-metadata",
    ),
    path("oauth/connections/", views.connections, name="oauth-connections"),
    path(
        "oauth/connections/<int:connection_id>/revoke/",
        views.connection_revoke,
        name="oauth-connection-revoke",
    ),
    path("oauth/", include(protocol)),
]

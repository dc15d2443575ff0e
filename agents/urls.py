from django.urls import path

from agents import api

urlpatterns = [
    path("capabilities", api.CapabilitiesView.as_view(), name="capabilities"),
    # Personal access tokens (docs/contract/interfaces.md).
    path("tokens", api.TokenListView.as_view(), name="tokens"),
    path("tokens/<str:token_id>/revoke", api.TokenRevokeView.as_view(), name="token-revoke"),
    # Admin API (docs/contract/admin.md), under /api/v1/admin/.
    path("admin/agents", api.AdminAgentListView.as_view(), name="admin-agents"),
    path("admin/agents/<str:agent_id>", api.AdminAgentDetailView.as_view(), name="admin-agent"),
    path("admin/agents/<str:agent_id>/keys", api.AdminKeyIssueView.as_view(), name="admin-agent-keys"),
    path(
        "admin/agents/<str:agent_id>/keys/<str:key_id>/revoke",
        api.AdminKeyRevokeView.as_view(),
        name="admin-agent-key-revoke",
    ),
    path(
        "admin/agents/<str:agent_id>/keys/<str:key_id>/rotate",
        api.AdminKeyRotateView.as_view(),
        name="admin-agent-key-rotate",
    ),
]

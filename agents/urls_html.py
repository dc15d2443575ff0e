"""HTML door of agents: agent and key pages (``/agents/``) and the signed-in user's own account
(``/account/``: personal tokens, two-factor). Included at the site root."""

from __future__ import annotations

from django.urls import path

from agents import views

app_name = "agents"

urlpatterns = [
    path("agents/", views.agent_list, name="list"),
    path("agents/create/", views.agent_create, name="create"),
    path("agents/<str:agent_id>/", views.agent_detail, name="detail"),
    path("agents/<str:agent_id>/keys/", views.key_issue, name="key-issue"),
    path("agents/<str:agent_id>/keys/<str:key_id>/rotate/", views.key_rotate, name="key-rotate"),
    path("agents/<str:agent_id>/keys/<str:key_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("account/", views.account, name="settings"),
    path("account/tokens/", views.token_create, name="token-create"),
    path("account/tokens/<str:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("account/two-factor/", views.two_factor, name="two-factor"),
    path("account/two-factor/disable/", views.two_factor_disable, name="two-factor-disable"),
]

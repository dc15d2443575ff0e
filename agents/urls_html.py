from __future__ import annotations

from django.urls import path

from agents import views

app_name = "agents_ui"

urlpatterns = [
    path("", views.agent_list, name="list"),
    path("create/", views.agent_create, name="create"),
    path("<str:agent_id>/", views.agent_detail, name="detail"),
    path("<str:agent_id>/keys/", views.key_issue, name="key-issue"),
    path("<str:agent_id>/keys/<str:key_id>/rotate/", views.key_rotate, name="key-rotate"),
    path("<str:agent_id>/keys/<str:key_id>/revoke/", views.key_revoke, name="key-revoke"),
]

from __future__ import annotations

from django.urls import path

from policies import views

app_name = "policies"

urlpatterns = [
    path("", views.policy_list, name="list"),
    path("create/", views.policy_create, name="create"),
    path("<str:policy_id>/", views.policy_detail, name="detail"),
    path("<str:policy_id>/edit/", views.policy_edit, name="edit"),
    path("<str:policy_id>/console/", views.policy_console, name="console"),
    path("<str:policy_id>/publish/", views.policy_publish, name="publish"),
    path("<str:policy_id>/retire/", views.policy_retire, name="retire"),
    path("<str:policy_id>/grants/", views.policy_grant, name="grant"),
    path("<str:policy_id>/grants/<str:agent_id>/revoke/", views.policy_grant_revoke, name="grant-revoke"),
]

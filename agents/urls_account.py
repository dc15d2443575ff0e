from __future__ import annotations

from django.urls import path

from agents import views_account

app_name = "account"

urlpatterns = [
    path("", views_account.account, name="settings"),
    path("tokens/", views_account.token_create, name="token-create"),
    path("tokens/<str:token_id>/revoke/", views_account.token_revoke, name="token-revoke"),
    path("two-factor/", views_account.two_factor, name="two-factor"),
    path("two-factor/disable/", views_account.two_factor_disable, name="two-factor-disable"),
]

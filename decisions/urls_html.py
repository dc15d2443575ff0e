from __future__ import annotations

from django.urls import path

from decisions import views

app_name = "decisions"

urlpatterns = [
    path("", views.decision_list, name="list"),
    path("<str:decision_id>/", views.decision_detail, name="detail"),
    path("<str:decision_id>/export.json", views.decision_export, name="export"),
]

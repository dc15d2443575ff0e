from __future__ import annotations

from django.urls import path

from approvals import views_review

app_name = "routes_ui"

urlpatterns = [
    path("", views_review.route_list, name="list"),
    path("<str:route_id>/", views_review.route_detail, name="detail"),
]

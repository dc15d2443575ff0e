from __future__ import annotations

from django.urls import path

from products import views_ui

app_name = "products_ui"

urlpatterns = [
    path("", views_ui.product_list, name="list"),
    path("<str:product_id>/", views_ui.product_detail, name="detail"),
]

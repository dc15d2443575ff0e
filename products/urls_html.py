from __future__ import annotations

from django.urls import path

from products import views

app_name = "products"

urlpatterns = [
    path("", views.product_list, name="list"),
    path("<str:product_id>/", views.product_detail, name="detail"),
]

from django.urls import path

from products import api

urlpatterns = [
    path("products", api.ProductsListView.as_view(), name="products-list"),
    path("products/<str:product>", api.ProductGetView.as_view(), name="product-get"),
    path("decisions/<str:decision_id>/read", api.DecisionReadView.as_view(), name="decision-read"),
    path("decisions/<str:decision_id>/write", api.DecisionWriteView.as_view(), name="decision-write"),
    path("admin/data-sources", api.AdminDataSourcesView.as_view(), name="admin-data-sources"),
    path("admin/products", api.AdminProductsView.as_view(), name="admin-products"),
    path("admin/products/<str:product_id>", api.AdminProductView.as_view(), name="admin-product"),
    path(
        "admin/products/<str:product_id>/publish",
        api.AdminProductPublishView.as_view(),
        name="admin-product-publish",
    ),
    path(
        "admin/products/<str:product_id>/grants",
        api.AdminProductGrantView.as_view(),
        name="admin-product-grants",
    ),
]

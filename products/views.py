"""HTML door of data products for admins: list and detail (editing lives in the Django admin)."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from products.selectors import product_for_admin, products_for_admin
from tracemem_core.errors import NotFound, PermissionDenied
from tracemem_site.web import web_actor


@login_required
def product_list(request: HttpRequest) -> HttpResponse:
    try:
        products = list(products_for_admin(web_actor(request)))
    except PermissionDenied as exc:
        return render(request, "products/ui_list.html", {"products": [], "refused": exc.message}, status=403)
    return render(request, "products/ui_list.html", {"products": products, "refused": None})


@login_required
def product_detail(request: HttpRequest, product_id: str) -> HttpResponse:
    try:
        product = product_for_admin(web_actor(request), product_id)
    except (NotFound, PermissionDenied):
        raise Http404("no such data product") from None
    return render(
        request,
        "products/ui_detail.html",
        {
            "product": product,
            "fields_json": json.dumps(product.fields, indent=2),
            "grants": product.grants.select_related("agent").order_by("agent__name"),
        },
    )

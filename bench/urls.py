"""The site's URLs plus the stock django-mcp-server transport at /mcp-stock, for comparison only."""

from __future__ import annotations

from django.urls import path

from tracemem_site.mcp import StockMCPView
from tracemem_site.urls import urlpatterns as site_urlpatterns

urlpatterns = [*site_urlpatterns, path("mcp-stock", StockMCPView.as_view())]

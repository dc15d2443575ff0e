from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from agents import views as agent_views
from tracemem_site import health, metrics_view
from tracemem_site import views as site_views
from tracemem_site.mcp import MCPView

api_v1 = [
    # The hot path (decisions, then decision_evaluate) first: Django tries the patterns in order on
    # every request.
    path("", include("decisions.urls")),
    path("", include("policies.urls")),
    path("", include("agents.urls")),
    path("", include("approvals.urls")),
    path("", include("products.urls")),
    path("", include("audit.urls")),
    path("", include("receiptlog.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("mcp", MCPView.as_view(), name="mcp"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's set-up as a script file: no inline script for the CSP to allow.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("favicon.ico", site_views.favicon, name="favicon"),
    # The OAuth door (issue 15): /oauth/mcp, its metadata, the authorization server, consent.
    path("", include("oauth.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("", include("decisions.urls_wellknown")),
    path("", include("receiptlog.urls_wellknown")),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view.metrics_endpoint, name="metrics"),
    # Reviewer and admin web UI (issue 7).
    path("", site_views.dashboard, name="dashboard"),
    path("login/", site_views.login_view, name="login"),
    path("login/verify/", agent_views.login_verify, name="login-verify"),
    path("logout/", site_views.logout_view, name="logout"),
    path("decisions/", include("decisions.urls_html")),
    path("", include("agents.urls_html")),
    path("policies/", include("policies.urls_html")),
    path("", include("approvals.urls_html")),
    path("products/", include("products.urls_html")),
    path("audit/", include("audit.urls_html")),
]

handler404 = "tracemem_site.middleware.page_not_found"
handler500 = "tracemem_site.middleware.server_error"

from django.urls import path

from approvals import api

urlpatterns = [
    path(
        "decisions/<str:decision_id>/approvals",
        api.DecisionRequestApprovalView.as_view(),
        name="decision-request-approval",
    ),
    path("approvals", api.ApprovalListView.as_view(), name="approval-list"),
    path("approvals/<str:approval_id>", api.ApprovalGetView.as_view(), name="approval-get"),
    path("approvals/<str:approval_id>/approve", api.ApprovalApproveView.as_view(), name="approval-approve"),
    path("approvals/<str:approval_id>/reject", api.ApprovalRejectView.as_view(), name="approval-reject"),
    path("approvals/<str:approval_id>/resolve", api.ApprovalResolveView.as_view(), name="approval-resolve"),
    path("admin/routes", api.AdminRouteListView.as_view(), name="admin-routes"),
    path("admin/routes/<str:route_id>", api.AdminRouteDetailView.as_view(), name="admin-route"),
    path(
        "admin/webhook-endpoints", api.AdminWebhookEndpointListView.as_view(), name="admin-webhook-endpoints"
    ),
    path(
        "admin/webhook-endpoints/<str:name>",
        api.AdminWebhookEndpointDetailView.as_view(),
        name="admin-webhook-endpoint",
    ),
    path("admin/integrations", api.AdminIntegrationListView.as_view(), name="admin-integrations"),
    path("admin/integrations/<str:name>", api.AdminIntegrationDetailView.as_view(), name="admin-integration"),
]

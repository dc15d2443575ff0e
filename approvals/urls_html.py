"""HTML door of approvals: the review queue (``/review/``), routes (``/routes/``), the signed email
link and Slack's interactions endpoint. Included at the site root."""

from __future__ import annotations

from django.urls import path

from approvals import views

app_name = "approvals"

urlpatterns = [
    path("review/", views.review_queue, name="queue"),
    path("review/count/", views.review_count, name="count"),
    path("review/resolved/", views.resolved_list, name="resolved"),
    path("review/deliveries/", views.delivery_list, name="deliveries"),
    path("review/<str:approval_id>/", views.approval_page, name="approval"),
    path("review/<str:approval_id>/vote/", views.approval_vote, name="vote"),
    path("routes/", views.route_list, name="route-list"),
    path("routes/<str:route_id>/", views.route_detail, name="route-detail"),
    path("approvals/email/<str:token>", views.email_confirm, name="email-confirm"),
    path("integrations/slack/interactions", views.slack_interactions, name="slack-interactions"),
]

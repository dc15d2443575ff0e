from __future__ import annotations

from django.urls import path

from approvals import views_review

app_name = "review"

urlpatterns = [
    path("", views_review.review_queue, name="queue"),
    path("count/", views_review.review_count, name="count"),
    path("<str:approval_id>/", views_review.approval_page, name="approval"),
    path("<str:approval_id>/vote/", views_review.approval_vote, name="vote"),
]

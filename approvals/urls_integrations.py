from django.urls import path

from approvals import views

urlpatterns = [
    path("approvals/email/<str:token>", views.email_confirm, name="approval-email-confirm"),
    path("integrations/slack/interactions", views.slack_interactions, name="slack-interactions"),
]

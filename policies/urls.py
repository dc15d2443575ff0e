from django.urls import path

from policies import api

urlpatterns = [
    path(
        "decisions/<str:decision_id>/evaluate", api.DecisionEvaluateView.as_view(), name="decision-evaluate"
    ),
    path("admin/policies", api.AdminPolicyListView.as_view(), name="admin-policies"),
    path("admin/policies/<str:policy_id>", api.AdminPolicyDetailView.as_view(), name="admin-policy"),
    path(
        "admin/policies/<str:policy_id>/draft", api.AdminPolicyDraftView.as_view(), name="admin-policy-draft"
    ),
    path(
        "admin/policies/<str:policy_id>/publish",
        api.AdminPolicyPublishView.as_view(),
        name="admin-policy-publish",
    ),
    path(
        "admin/policies/<str:policy_id>/retire",
        api.AdminPolicyRetireView.as_view(),
        name="admin-policy-retire",
    ),
    path("admin/policies/<str:policy_id>/test", api.AdminPolicyTestView.as_view(), name="admin-policy-test"),
    path(
        "admin/policies/<str:policy_id>/replay",
        api.AdminPolicyReplayView.as_view(),
        name="admin-policy-replay",
    ),
    path(
        "admin/policies/<str:policy_id>/grants",
        api.AdminPolicyGrantsView.as_view(),
        name="admin-policy-grants",
    ),
]

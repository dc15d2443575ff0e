from django.urls import path

from receiptlog import api

urlpatterns = [
    path(
        "decisions/<str:decision_id>/inclusion",
        api.DecisionInclusionView.as_view(),
        name="decision-inclusion",
    ),
    path("log/consistency", api.ConsistencyView.as_view(), name="log-consistency"),
]

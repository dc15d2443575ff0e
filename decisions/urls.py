from django.urls import path

from decisions import api

urlpatterns = [
    path("decisions", api.DecisionCreateView.as_view(), name="decision-create"),
    path("decisions/<str:decision_id>", api.DecisionGetView.as_view(), name="decision-get"),
    path("decisions/<str:decision_id>/wait", api.DecisionWaitView.as_view(), name="decision-wait"),
    path("decisions/<str:decision_id>/trace", api.DecisionTraceView.as_view(), name="decision-trace"),
    path("decisions/<str:decision_id>/context", api.DecisionContextView.as_view(), name="decision-context"),
    path("decisions/<str:decision_id>/close", api.DecisionCloseView.as_view(), name="decision-close"),
    path(
        "decisions/<str:decision_id>/receipt",
        api.DecisionReceiptView.as_view(),
        name="decision-receipt",
    ),
    path(
        "decisions/<str:decision_id>/evidence",
        api.DecisionEvidenceView.as_view(),
        name="decision-evidence",
    ),
    path("records", api.RecordsView.as_view(), name="records"),
]

"""Public, unauthenticated documents of the receipt log under ``/.well-known/tracemem/``."""

from django.urls import path

from receiptlog import api

urlpatterns = [
    path(".well-known/tracemem/checkpoint", api.CheckpointView.as_view(), name="log-checkpoint"),
]

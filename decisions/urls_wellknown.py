"""Public, unauthenticated documents under ``/.well-known/tracemem/``."""

from django.urls import path

from decisions import api

urlpatterns = [
    path(".well-known/tracemem/receipt-keys", api.ReceiptKeysView.as_view(), name="receipt-keys"),
]

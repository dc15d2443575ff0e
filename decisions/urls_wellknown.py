"""Public, unauthenticated documents under ``/.well-known/tracemem/``."""

from django.urls import path

from decisions import api_proof

urlpatterns = [
    path(".well-known/tracemem/receipt-keys", api_proof.ReceiptKeysView.as_view(), name="receipt-keys"),
]

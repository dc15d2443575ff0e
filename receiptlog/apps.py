from django.apps import AppConfig


class ReceiptLogConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "receiptlog"
    verbose_name = "Receipt log"

    def ready(self) -> None:
        # Every receipt becomes a leaf in its close transaction, and the evidence pack carries the
        # receipt's inclusion proof; decisions cannot import this app (it imports decisions), so it
        # calls us through these registries.
        from decisions.evidence import register_pack_section
        from decisions.receipts import register_receipt_listener
        from receiptlog.selectors import pack_inclusion
        from receiptlog.services import log_append

        register_receipt_listener(log_append)
        register_pack_section("inclusion", pack_inclusion)

from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "approvals"

    def ready(self) -> None:
        # Closing a decision cancels its pending approval in the same transaction; decisions cannot
        # import approvals (approvals imports decisions), so it calls us through this registry.
        from approvals.services import approval_cancel_on_close
        from decisions.services import register_close_participant

        register_close_participant(approval_cancel_on_close)

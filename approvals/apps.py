from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "approvals"

    def ready(self) -> None:
        # Closing a decision cancels its pending approval in the same transaction; decisions cannot
        # import approvals (approvals imports decisions), so it calls us through this registry.
        from approvals.selectors import pending_approval_overdue
        from approvals.services.requests import approval_cancel_on_close, approval_settle_overdue
        from decisions.selectors import register_overdue_check
        from decisions.services import register_close_participant, register_lock_settler

        register_close_participant(approval_cancel_on_close)
        # An approval past its deadline is expired the moment anyone looks (decision_get) or acts.
        register_overdue_check(pending_approval_overdue)
        register_lock_settler(approval_settle_overdue)

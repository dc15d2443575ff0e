from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.selectors import audit_verify


class Command(BaseCommand):
    help = "Recompute the admin audit log's hash chain and report the first broken link (non-zero exit)."

    def handle(self, *args: Any, **options: Any) -> None:
        checked, broken = audit_verify()
        if broken is not None:
            self.stderr.write(f"BROKEN {broken}")
            raise CommandError(f"the admin audit log is broken ({checked} entries checked)")
        self.stdout.write(f"OK: {checked} audit log entries verified, the hash chain is intact")

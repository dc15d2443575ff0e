from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from decisions.selectors import trace_verify_all


class Command(BaseCommand):
    help = "Recompute every decision's hash chain (or one with --decision) and report the first broken link."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--decision", help="verify only this decision id")

    def handle(self, *args: Any, **options: Any) -> None:
        checked, breaks = trace_verify_all(decision_id=options["decision"])
        for broken in breaks:
            self.stderr.write(f"BROKEN {broken}")
        if breaks:
            raise CommandError(f"{len(breaks)} of {checked} decision traces are broken")
        self.stdout.write(f"OK: {checked} decision traces verified, every hash chain intact")

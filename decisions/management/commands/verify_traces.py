from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from decisions.integrity import decisions_verify


class Command(BaseCommand):
    help = (
        "Check every decision (or one with --decision): its hash chain recomputes, its row agrees with its "
        "trace, and a closed decision's stored receipt verifies and matches both. Reports each mismatch."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--decision", help="verify only this decision id")

    def handle(self, *args: Any, **options: Any) -> None:
        checked, problems = decisions_verify(decision_id=options["decision"])
        for decision_id, problem in problems:
            self.stderr.write(f"BROKEN decision {decision_id}: {problem}")
        failing = len({decision_id for decision_id, _ in problems})
        if failing:
            raise CommandError(f"{failing} of {checked} decisions fail verification")
        self.stdout.write(
            f"OK: {checked} decisions verified: every hash chain intact, every closed decision matches its trace "
            "and its signed receipt"
        )

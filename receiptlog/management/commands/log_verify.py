from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from receiptlog.integrity import checkpoint_files, log_verify
from tracemem_verify.receipt import keys_from_document


class Command(BaseCommand):
    help = (
        "Recompute the whole receipt log from the receipts in the database and compare it with every "
        "stored checkpoint, every checkpoint in TRACEMEM_CHECKPOINT_DIR and every --checkpoint file. "
        "Reports each mismatch; exits non-zero on any."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--checkpoint",
            action="append",
            default=[],
            metavar="FILE",
            help="a checkpoint kept elsewhere (by an auditor or a witness); repeat for several",
        )
        parser.add_argument(
            "--keys",
            default=None,
            metavar="FILE",
            help="the receipt-keys document you kept (/.well-known/tracemem/receipt-keys); by default the "
            "keys published from this database, which its superuser could add to",
        )
        parser.add_argument(
            "--checkpoint-dir",
            default=None,
            help="a directory of checkpoint files (default: TRACEMEM_CHECKPOINT_DIR)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        directory = options["checkpoint_dir"] or settings.TRACEMEM_CHECKPOINT_DIR
        files = [*checkpoint_files(directory), *(Path(p) for p in options["checkpoint"])]
        keys = None
        if options["keys"]:
            try:
                keys = [
                    dict(k) for k in keys_from_document(json.loads(Path(options["keys"]).read_text("utf-8")))
                ]
            except (OSError, ValueError) as exc:
                raise CommandError(f"--keys {options['keys']}: not a receipt-keys document: {exc}") from None
        report = log_verify(files=files, keys=keys)
        # A configured (or given) directory that is not there compared nothing: never call that OK.
        # The tick creates it with the first checkpoint, so it is missing only before any exists.
        if directory and not Path(directory).is_dir() and (options["checkpoint_dir"] or report.checkpoints):
            report.problems.append(
                f"checkpoint directory {directory} does not exist (or is not a directory): no checkpoint "
                "kept there was compared"
            )
        for problem in report.problems:
            self.stderr.write(f"BROKEN receipt log: {problem}")
        if report.problems:
            raise CommandError(f"{len(report.problems)} problem(s) in the receipt log")
        self.stdout.write(
            f"OK: receipt log of {report.leaves} leaves recomputed from the receipts; "
            f"{report.checkpoints} checkpoint(s) signed by published keys and matching it"
        )

"""``manage.py tick [--every SECONDS] [--once]``: the Celery beat schedule without Celery beat.

The embedded default has no broker and no beat, yet approvals must still expire (fail closed) and
overdue deliveries must still be retried. This runs every task of ``CELERY_BEAT_SCHEDULE`` — the
same task functions beat would run, e.g. ``approvals.tick`` — in this process, in a loop.
``scripts/run.sh`` starts it next to gunicorn when no broker is configured.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from tracemem_core import heartbeat
from tracemem_core.env import env_int
from tracemem_site.celery import app

logger = logging.getLogger(__name__)


def beat_task_names() -> list[str]:
    return [str(entry["task"]) for entry in settings.CELERY_BEAT_SCHEDULE.values()]


class Command(BaseCommand):
    help = (
        "Run the periodic work of the Celery beat schedule (approval expiry, delivery re-dispatch) in a loop."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every",
            type=float,
            default=float(env_int("TRACEMEM_APPROVALS_TICK_SECONDS", 30)),
            help="seconds between runs (default TRACEMEM_APPROVALS_TICK_SECONDS or 30)",
        )
        parser.add_argument("--once", action="store_true", help="run every task once and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        every: float = options["every"]
        if every <= 0:
            raise CommandError("--every must be a positive number of seconds")
        app.loader.import_default_modules()
        names = beat_task_names()
        missing = [name for name in names if name not in app.tasks]
        if missing:
            raise CommandError(f"beat schedule names unknown task(s): {', '.join(missing)}")
        if options["once"]:
            self._run(names, quiet=False)
            return
        self.stdout.write(f"tick: running {', '.join(names)} every {every:g} s (Ctrl-C stops)")
        try:
            while True:
                started = time.monotonic()
                # A long-lived loop must not keep using a connection the database has dropped.
                close_old_connections()
                self._run(names, quiet=True)
                time.sleep(max(0.0, every - (time.monotonic() - started)))
        except KeyboardInterrupt:
            self.stdout.write("tick: stopped")

    def _run(self, names: list[str], *, quiet: bool) -> None:
        heartbeat.stamp("beat")  # this loop is the embedded default's beat
        for name in names:
            try:
                # Calling the task object runs its body here, exactly as a beat-triggered worker would.
                result = app.tasks[name]()
            except Exception:
                # Keep ticking: the next run retries, and a dead loop would stop expiry for good.
                logger.exception("tick: %s failed", name)
                self.stderr.write(f"tick: {name} failed (see the log); retrying on the next run")
                continue
            if not quiet or (isinstance(result, dict) and any(result.values())):
                self.stdout.write(f"tick: {name} {result}")

from __future__ import annotations

from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from tracemem_site.demo import seed


class Command(BaseCommand):
    help = "Create the quick-start demo: an admin, an agent with one printed key, and sample governance."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            lines = seed()
        except (DatabaseError, psycopg.Error) as exc:
            # The demo's business tables are created by the owner of the database, never the app role.
            raise CommandError(
                f"{exc}".strip().splitlines()[0]
                + " — seed_demo creates its tables as the owner: run it where "
                "MIGRATION_DATABASE_URL is set (docker compose run --rm migrate python manage.py seed_demo)"
            ) from None
        for line in lines:
            self.stdout.write(line)

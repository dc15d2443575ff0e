"""``manage.py migrate``, run as the owner, then the roles' grants re-applied (docs/security.md).

Django's own ``migrate`` with two additions: it logs in with ``MIGRATION_DATABASE_URL`` (the owner
of TraceMem's tables; defaults to ``DATABASE_URL``), and when ``DATABASE_URL`` names an app role of
its own that exists, it re-applies that role's grants afterwards, so tables a new release adds are
usable by the server (and append-only ones only appendable) as soon as ``migrate`` finishes.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands.migrate import Command as DjangoMigrate

from tracemem_core import dbroles


class Command(DjangoMigrate):
    def handle(self, *args: Any, **options: Any) -> None:
        app = dbroles.app_role_from_settings()  # before the connection logs in as the owner
        dbroles.use_owner_credentials(options["database"])
        super().handle(*args, **options)
        if app is not None:
            line = dbroles.regrant_after_migrate(app[0])
            if options["verbosity"]:
                self.stdout.write(line)

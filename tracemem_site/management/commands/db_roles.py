"""``manage.py db_roles --app-user USER [--products-user USER] [--dry-run]`` (docs/contract/interfaces.md).

Run as the owner (``MIGRATION_DATABASE_URL``, else ``DATABASE_URL``) after ``migrate``: creates the
missing roles and gives each exactly its share of TraceMem's database (``tracemem_core.dbroles``,
docs/security.md). Idempotent. ``--dry-run`` prints the SQL (passwords masked) and changes nothing.
The app role's password is taken from ``DATABASE_URL`` when that URL logs in as ``--app-user``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tracemem_core import dbroles


class Command(BaseCommand):
    help = "Create TraceMem's app role (and products role) and grant each exactly what it needs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--app-user", required=True, help="the role the web server and workers log in as")
        parser.add_argument(
            "--products-user",
            help="the role built-in data products run as (no login); only the business schema "
            f"({settings.TRACEMEM_DATA_SCHEMA}) is reachable to it",
        )
        parser.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        app_user, products_user = options["app_user"], options["products_user"]
        for name in filter(None, (app_user, products_user)):
            if not dbroles.IDENTIFIER.match(name):
                raise CommandError(
                    f"{name!r} is not a plain lowercase role name ([a-z_][a-z0-9_]*, at most 63)"
                )
        if products_user == app_user:
            raise CommandError("--products-user must be a role other than --app-user")
        from_settings = dbroles.app_role_from_settings()
        password = from_settings[1] if from_settings and from_settings[0] == app_user else None
        try:
            with dbroles.owner_connection() as conn:
                statements = dbroles.role_statements(
                    conn, app_user=app_user, products_user=products_user, app_password=password
                )
                if options["dry_run"]:
                    conn.rollback()
                    for statement in statements:
                        self.stdout.write(statement.shown + ";")
                    return
                dbroles.apply(conn, statements)
        except dbroles.RoleError as exc:
            raise CommandError(str(exc)) from None
        except psycopg.Error as exc:
            raise CommandError(f"db_roles must run as the owner (MIGRATION_DATABASE_URL): {exc}") from None
        if options["verbosity"]:
            self.stdout.write(
                f"Roles ready: {app_user} (app: DATABASE_URL)"
                + (
                    f", {products_user} (built-in data products: TRACEMEM_PRODUCTS_ROLE)"
                    if products_user
                    else ""
                )
            )
            if products_user and settings.TRACEMEM_PRODUCTS_ROLE != products_user:
                self.stdout.write(
                    f"Set TRACEMEM_PRODUCTS_ROLE={products_user} for the web server and workers."
                )
            if password is None:
                self.stdout.write(
                    f"No password set for {app_user}: DATABASE_URL does not log in as it "
                    f"(set one with ALTER ROLE {app_user} PASSWORD ..., or use another authentication method)."
                )

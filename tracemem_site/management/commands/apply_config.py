"""``manage.py apply_config FILE.yaml [--dry-run]``: governance as code (docs/contract/admin.md).

The YAML file has top-level sections; each section is handled by ONE function in the owning
app's ``config.py``, ``apply_<section>(*, actor, items, dry_run) -> list[str]`` (lines describing
what it did or would do). Sections run in dependency order, all in one transaction; with
``--dry-run`` the handlers do the same work and the transaction is rolled back, so a dry run refuses
exactly what a real run would. Format: docs/apply_config.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.module_loading import import_string

from tracemem_core import safejson
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError

# section → handler, in the order they run (later sections may refer to earlier ones).
# Each app adds its own line here; a handler that does not exist yet is reported, not skipped.
SECTIONS: dict[str, str] = {
    "data_sources": "products.config.apply_data_sources",
    "products": "products.config.apply_products",
    "webhook_endpoints": "approvals.config.apply_webhook_endpoints",
    "slack_integrations": "approvals.config.apply_slack_integrations",
    "routes": "approvals.config.apply_routes",
    "policies": "policies.config.apply_policies",
    "grants": "products.config.apply_grants",
}


class _DryRunRollback(Exception):
    pass


class Command(BaseCommand):
    help = (
        "Create or update data sources, products, webhook endpoints, Slack integrations, routes, policies and "
        "grants from a YAML file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path to the YAML file")
        parser.add_argument("--dry-run", action="store_true", help="show the changes without making them")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        dry_run: bool = options["dry_run"]
        try:
            document = safejson.load_yaml(path.read_text(encoding="utf-8"))
        except safejson.JSONTooDeep as exc:
            raise CommandError(f"{path}: {exc}; nothing was changed") from None
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise CommandError(f"{path} is not valid YAML: {exc}") from None
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise CommandError(f"{path}: the top level must be a mapping of sections ({', '.join(SECTIONS)})")
        unknown = sorted(set(document) - set(SECTIONS))
        if unknown:
            raise CommandError(
                f"{path}: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}"
            )
        handlers = {}
        for section in SECTIONS:
            if section in document:
                try:
                    handlers[section] = import_string(SECTIONS[section])
                except ImportError:
                    raise CommandError(
                        f"section {section!r} is not supported by this server yet ({SECTIONS[section]} is missing)"
                    ) from None
        actor = Actor.system("apply_config")
        lines: list[str] = []
        try:
            with transaction.atomic():
                for section, handler in handlers.items():
                    items = document[section] or []
                    lines.extend(handler(actor=actor, items=items, dry_run=dry_run))
                if dry_run:
                    raise _DryRunRollback
        except _DryRunRollback:
            pass
        except DomainError as exc:
            raise CommandError(f"{exc}; nothing was changed") from None
        for line in lines:
            self.stdout.write(line)
        self.stdout.write(
            ("Dry run: nothing was changed." if dry_run else "Done.") + f" {len(lines)} line(s)."
        )

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from tracemem_site.demo import seed


class Command(BaseCommand):
    help = "Create the quick-start demo: an admin, an agent with one printed key, and sample governance."

    def handle(self, *args: Any, **options: Any) -> None:
        for line in seed():
            self.stdout.write(line)

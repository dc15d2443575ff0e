from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from agents import selectors, services
from tracemem_site.actor import Actor
from tracemem_site.errors import DomainError


class Command(BaseCommand):
    help = "Create a personal access token (Authorization: Token …) for a user and print it once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = selectors.user_by_username(options["username"])
            issued = services.personal_token_create(actor=Actor.system(), user=user, name=options["name"])
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Created token {issued.token.prefix}… for {user.get_username()} (shown once):")
        self.stdout.write(issued.secret)

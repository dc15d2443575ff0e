from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from agents import selectors
from agents.services import tokens as agent_tokens
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError


class Command(BaseCommand):
    help = "Create a personal access token (Authorization: Token …) for a user and print it once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--name", help="default: a name none of the user's tokens has (default, token-2, ...)"
        )
        parser.add_argument("--expires-in-days", type=int, default=None, help="unset: never expires")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = selectors.user_by_username(options["username"])
            days = options["expires_in_days"]
            if days is not None and not 1 <= days <= 3650:
                raise CommandError("--expires-in-days must be from 1 to 3650")
            issued = agent_tokens.personal_token_create(
                actor=Actor.system(),
                user=user,
                name=options["name"],
                expires_at=timezone.now() + timedelta(days=days) if days else None,
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        token = issued.token
        expiry = f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else ""
        self.stdout.write(
            f"Created token {token.token_id} ({token.prefix}…) for {user.get_username()}{expiry} (shown once):"
        )
        self.stdout.write(issued.secret)

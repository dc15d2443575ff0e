from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from agents import selectors
from agents.services import tokens as agent_tokens
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError


class Command(BaseCommand):
    help = (
        "Revoke a personal access token by its id (tok_N, as GET /api/v1/tokens and the settings page show)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("token_id")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.system()
        try:
            token = selectors.personal_token_by_id(actor, options["token_id"])
            already = token.revoked_at
            token = agent_tokens.personal_token_revoke(actor=actor, token=token)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        owner = token.user.get_username()
        if already is not None:
            self.stdout.write(
                f"Token {token.token_id} ({token.prefix}…) of {owner} was already revoked at {already}."
            )
        else:
            self.stdout.write(
                f"Revoked token {token.token_id} ({token.prefix}…) of {owner}; it is refused from now on."
            )

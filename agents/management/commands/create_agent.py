from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from agents import selectors
from agents.services import registry as agent_registry
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError


class Command(BaseCommand):
    help = "Create an agent (or reuse the one with that name) and print one new key for it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name")
        parser.add_argument("--owner", help="username of the human responsible for this agent")
        parser.add_argument(
            "--key-name", help="default: a name none of the agent's keys has (default, key-2, ...)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            owner = selectors.user_by_username(options["owner"]) if options["owner"] else None
            agent, created = agent_registry.agent_get_or_create(
                actor=Actor.system(), name=options["name"], owner=owner
            )
            issued = agent_registry.agent_key_issue(
                actor=Actor.system(), agent=agent, name=options["key_name"]
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        verb = "Created" if created else "Reused"
        self.stdout.write(f"{verb} agent {agent.name} ({agent.agent_id}).")
        self.stdout.write(f"New key {issued.key.prefix}… (shown once, store it now):")
        self.stdout.write(issued.secret)

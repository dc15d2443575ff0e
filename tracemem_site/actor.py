"""Who is acting: every service takes one explicitly (STYLE rule 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from agents.models import Agent

ActorKind = Literal["agent", "user", "system"]


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str
    name: str
    agent: Agent | None = None
    user: AbstractBaseUser | None = None

    @classmethod
    def for_agent(cls, agent: Agent) -> Actor:
        return cls(kind="agent", id=agent.agent_id, name=agent.name, agent=agent)

    @classmethod
    def for_user(cls, user: AbstractBaseUser) -> Actor:
        return cls(kind="user", id=f"user_{user.pk}", name=user.get_username(), user=user)

    @classmethod
    def system(cls, name: str = "tracemem") -> Actor:
        return cls(kind="system", id="system", name=name)

    def as_trace(self) -> dict[str, Any]:
        """The ``actor`` object stored on trace events (SPEC §5)."""
        return {"kind": self.kind, "id": self.id, "name": self.name}

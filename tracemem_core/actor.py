"""Who is acting: every service takes one explicitly (STYLE rule 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from tracemem_core.errors import Unauthenticated

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser, User

    from agents.models import Agent

ActorKind = Literal["agent", "user", "system"]


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str
    name: str
    agent: Agent | None = None
    user: User | None = None

    @classmethod
    def for_agent(cls, agent: Agent) -> Actor:
        return cls(kind="agent", id=agent.agent_id, name=agent.name, agent=agent)

    @classmethod
    def for_user(cls, user: AbstractBaseUser | AnonymousUser) -> Actor:
        """The actor for a logged-in user; an anonymous visitor is never an actor."""
        if not user.is_authenticated:
            raise Unauthenticated("log in first", details={"reason": "missing"})
        # AUTH_USER_MODEL is Django's User; the cast records that for the type checker.
        concrete = cast("User", user)
        return cls(kind="user", id=f"user_{concrete.pk}", name=concrete.get_username(), user=concrete)

    def require_agent(self) -> Agent:
        """The agent behind an agent's Actor; anyone else is refused (an agent-only operation)."""
        if self.agent is None:
            raise Unauthenticated("this operation needs an agent key", details={"reason": "missing"})
        return self.agent

    @classmethod
    def system(cls, name: str = "tracemem") -> Actor:
        return cls(kind="system", id="system", name=name)

    def as_trace(self) -> dict[str, Any]:
        """The ``actor`` object stored on trace events (docs/contract/states.md)."""
        return {"kind": self.kind, "id": self.id, "name": self.name}

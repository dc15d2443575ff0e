"""Python client for TraceMem (docs/contract/tools.md/docs/contract/errors.md/docs/contract/interfaces.md): see README.md.

from tracemem_client import Client, governed

client = Client("https://tracemem.example.com", api_key)

@governed(client, intent="code.refactor.execute", policy="code_change_policy_v1")
def refactor(component: str, change_type: str) -> str: ...
"""

from __future__ import annotations

__version__ = "0.1.0"

from tracemem_client.client import Client, Decision, DecisionBlock, ReviewerClient  # noqa: E402
from tracemem_client.errors import (  # noqa: E402
    ApprovalRejected,
    ApprovalRequired,
    ApprovalTimedOut,
    Conflict,
    GovernanceError,
    GovernanceRefused,
    InvalidArgument,
    InvalidState,
    NotFound,
    PermissionDenied,
    PolicyDenied,
    PurposeNotAllowed,
    RateLimited,
    TraceMemError,
    TransportError,
    Unauthenticated,
    Unavailable,
    UnsupportedByServer,
)
from tracemem_client.governed import GovernedCall, GovernedFunction, governed  # noqa: E402

__all__ = [
    "ApprovalRejected",
    "ApprovalRequired",
    "ApprovalTimedOut",
    "Client",
    "Conflict",
    "Decision",
    "DecisionBlock",
    "GovernanceError",
    "GovernanceRefused",
    "GovernedCall",
    "GovernedFunction",
    "InvalidArgument",
    "InvalidState",
    "NotFound",
    "PermissionDenied",
    "PolicyDenied",
    "PurposeNotAllowed",
    "RateLimited",
    "ReviewerClient",
    "TraceMemError",
    "TransportError",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedByServer",
    "governed",
]

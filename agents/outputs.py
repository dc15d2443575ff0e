"""Result shape of ``capabilities_get`` (documentation: tracemem_site/outputs.py)."""

from __future__ import annotations

from tracemem_core.outputs import Output


class GrantedProduct(Output):
    product_id: str
    permissions: list[str]
    purposes: list[str]


class GrantedPolicy(Output):
    policy_id: str
    name: str
    version: int


class Permissions(Output):
    data_products: list[GrantedProduct]
    policies: list[GrantedPolicy]


class ServerInfo(Output):
    name: str
    version: str
    protocol_versions: list[str]


class WorkflowStep(Output):
    tool: str
    when: str


class CapabilitiesOut(Output):
    agent_id: str
    name: str
    permissions: Permissions
    workflow: list[WorkflowStep]
    server: ServerInfo


# --- admin API -------------------------------------------------------------------------------


class KeyOut(Output):
    key_id: str
    name: str
    prefix: str
    state: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None
    rotated_from: str | None


class AgentOut(Output):
    agent_id: str
    name: str
    description: str
    owner: str | None
    disabled: bool
    created_at: str
    keys: list[KeyOut]


class AgentList(Output):
    agents: list[AgentOut]


class IssuedKeyOut(Output):
    key_id: str
    key: str
    expires_at: str | None
    name: str
    prefix: str
    agent_id: str


class RotatedKeyOut(IssuedKeyOut):
    previous_key: KeyOut

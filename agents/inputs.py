"""The input of ``capabilities_get`` (none), declared like every other operation's (docs/inputs.md)."""

from __future__ import annotations

from tracemem_core.inputs import Input


class CapabilitiesGet(Input):
    tool_name = "capabilities_get"

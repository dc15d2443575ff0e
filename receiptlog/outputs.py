"""Result shapes of the receipt log's REST door (documentation: tracemem_core/outputs.py)."""

from __future__ import annotations

from pydantic import Field

from decisions.outputs import PackInclusion, ReceiptOut
from tracemem_core.outputs import Output


class InclusionOut(PackInclusion):
    """``tracemem.inclusion.v1``: the receipt, its leaf and audit path against a checkpoint."""

    receipt: ReceiptOut


class ConsistencyOut(Output):
    """``tracemem.consistency.v1``: the proof that the log of size ``to`` extends that of ``from``."""

    format: str
    from_: int = Field(alias="from")
    to: int
    proof: list[str]

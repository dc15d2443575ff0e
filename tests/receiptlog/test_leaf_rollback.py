"""Each closed decision is a leaf exactly once (issue 19): the leaf is inserted in the close
transaction, so a close that fails after it takes the leaf with it and leaves no gap.

docs/receipts.md, "On the server".
"""

from __future__ import annotations

from typing import Any

import pytest

from receiptlog import services
from tests.conftest import AgentClient
from tests.receiptlog.test_server import close_decision, log_settings  # noqa: F401 - autouse fixture
from tracemem_core.actor import Actor

SYSTEM = Actor.system("test")


@pytest.mark.django_db(transaction=True)
def test_a_close_rolled_back_after_its_leaf_leaves_no_gap_and_no_trace(
    api: AgentClient, monkeypatch: Any, capsys: Any
) -> None:
    # The log's leaf is inserted, then something later in the close transaction fails: the leaf goes
    # with the rollback, and the next close takes that index; each closed decision is a leaf once.
    from django.core.management import call_command

    from decisions import receipts
    from decisions.models import Decision
    from receiptlog.models import LogLeaf

    first = close_decision(api)

    def fails_after_the_leaf(*, receipt: Any) -> None:
        assert LogLeaf.objects.filter(receipt=receipt, leaf_index=1).exists()
        raise RuntimeError("a later step of the close failed")

    monkeypatch.setattr(receipts, "_receipt_listeners", [*receipts._receipt_listeners, fails_after_the_leaf])
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    failed = api.post(f"/api/v1/decisions/{did}/close", {"action": "commit", "reason": "done"})
    assert failed.status_code == 500
    assert Decision.objects.get(pk=did).status == "open"
    assert list(LogLeaf.objects.values_list("leaf_index", "receipt_id")) == [(0, first)]
    monkeypatch.setattr(receipts, "_receipt_listeners", receipts._receipt_listeners[:-1])
    assert (
        api.post(f"/api/v1/decisions/{did}/close", {"action": "commit", "reason": "done"}).status_code == 200
    )
    assert list(LogLeaf.objects.order_by("leaf_index").values_list("leaf_index", "receipt_id")) == [
        (0, first),
        (1, did),
    ]
    services.log_tick(actor=SYSTEM)
    call_command("log_verify")
    assert "OK: receipt log of 2 leaves" in capsys.readouterr().out

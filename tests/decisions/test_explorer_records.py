"""The decision explorer shows a record with its supersession chain and offers the evidence pack."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from django.test import Client, override_settings

from decisions import receipts, records
from tests.perm_helpers import make_staff
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def signing_key() -> Iterator[None]:
    """Sign with a test key, never the developer's var/ key."""
    receipts._load_signing_key.cache_clear()
    with override_settings(TRACEMEM_RECEIPT_KEY=base64.b64encode(bytes(range(3, 35))).decode()):
        yield
    receipts._load_signing_key.cache_clear()


def test_record_page_shows_the_chain_and_the_evidence_button_downloads_the_pack(agent_actor: Actor) -> None:
    fields = {"category": "dependency", "context": "c", "decision": "d", "rationale": "r"}
    first = records.decision_record(actor=agent_actor, title="Pin Django 5.1", **fields)
    second = records.decision_record(
        actor=agent_actor, title="Pin Django 5.2", supersedes=first.decision_id, tags=["django"], **fields
    )
    auditor = make_staff("auditor", "decisions.view_decision")
    browser = Client()
    browser.force_login(auditor)

    page = browser.get(f"/decisions/{first.decision_id}/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "Engineering decision: Pin Django 5.1" in html
    assert "Supersession chain" in html
    assert html.index("Pin Django 5.1</strong> (this record)") < html.index(
        f'<a href="/decisions/{second.decision_id}/">Pin Django 5.2</a>'
    )
    evidence_url = f"/api/v1/decisions/{first.decision_id}/evidence?download=1"
    assert f'href="{evidence_url}"' in html

    download = browser.get(evidence_url)
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="evidence-{first.decision_id}.json"'
    pack = download.json()
    assert [e["type"] for e in pack["trace"]] == ["record"]
    assert pack["receipt"]["receipt_data"]["decision_id"] == first.decision_id


def test_plain_decision_page_has_no_record_card(agent_actor: Actor) -> None:
    from decisions import services

    decision = services.decision_create(
        actor=agent_actor, intent="code.refactor.execute", automation_mode="autonomous"
    )
    auditor = make_staff("auditor2", "decisions.view_decision")
    browser = Client()
    browser.force_login(auditor)
    html = browser.get(f"/decisions/{decision.decision_id}/").content.decode()
    assert 'id="record"' not in html
    assert 'id="evidence-pack"' in html

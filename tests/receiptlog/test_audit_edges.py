"""Issue 19 audit (a19): tree sizes at the edges give clear errors naming the field, never a 500."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client

from tests.conftest import AgentClient
from tests.receiptlog.test_server import (
    checkpoint_now,
    close_decision,
    log_settings,  # noqa: F401 - autouse fixture
)

pytestmark = pytest.mark.django_db


def _error(response: Any) -> tuple[int, str, Any]:
    body = response.json()
    return response.status_code, body["error"]["code"], body["error"].get("details")


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "99999999999999999999", " ", "1e3", "0x1"])
def test_checkpoint_by_a_bad_tree_size_names_the_field(api: AgentClient, value: str) -> None:
    close_decision(api)
    checkpoint_now()
    response = Client().get("/.well-known/tracemem/checkpoint", {"tree_size": value})
    assert _error(response) == (400, "invalid_argument", {"field": "tree_size"}), response.content


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "99999999999999999999", "0"])
def test_inclusion_at_a_bad_or_too_small_tree_size_names_the_field(api: AgentClient, value: str) -> None:
    assert checkpoint_now() == 0  # the empty log's checkpoint: size 0 exists but holds no leaf
    did = close_decision(api)
    checkpoint_now()
    response = api.get(f"/api/v1/decisions/{did}/inclusion?tree_size={quote(value)}")
    assert _error(response) == (400, "invalid_argument", {"field": "tree_size"}), response.content


def test_inclusion_beyond_the_log_is_not_found_and_current_works(api: AgentClient) -> None:
    did = close_decision(api)
    assert checkpoint_now() == 1
    assert api.get(f"/api/v1/decisions/{did}/inclusion?tree_size=1").status_code == 200
    status, code, _ = _error(api.get(f"/api/v1/decisions/{did}/inclusion?tree_size=2"))
    assert (status, code) == (404, "not_found")


def test_consistency_at_the_edges(api: AgentClient) -> None:
    # Before any checkpoint: nothing to prove beyond size 0.
    response = Client().get("/api/v1/log/consistency", {"from": "1"})
    assert response.status_code == 400, response.content
    close_decision(api)
    close_decision(api)
    assert checkpoint_now() == 2
    for query in ({"from": "0", "to": "2"}, {"from": "2", "to": "2"}, {"from": "0", "to": "0"}):
        response = Client().get("/api/v1/log/consistency", query)
        assert response.status_code == 200, (query, response.content)
        assert response.json()["proof"] == []
    for query, field in (
        ({"from": "1", "to": "-1"}, "to"),
        ({"from": "1", "to": "x"}, "to"),
        ({"from": "1", "to": "3"}, "to"),
        ({"from": "99999999999999999999"}, "from"),
    ):
        response = Client().get("/api/v1/log/consistency", query)
        assert _error(response) == (400, "invalid_argument", {"field": field}), (query, response.content)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("forge", ["column", "note"])
def test_the_database_refuses_a_checkpoint_of_the_next_size_with_a_wrong_root(
    api: AgentClient, forge: str
) -> None:
    # The size is one the log could sign (larger than the latest, within the log): only the root
    # check can refuse it, in the column or in the note's root line.
    import base64
    import hashlib

    from receiptlog.models import Checkpoint, LogLeaf
    from tests.conftest import psql_as_app
    from tracemem_verify.merkle import MemoryTree

    close_decision(api)
    assert checkpoint_now() == 1
    close_decision(api)
    tree = MemoryTree()
    for value in LogLeaf.objects.order_by("leaf_index").values_list("leaf_hash", flat=True):
        tree.append_hash(bytes(value))
    right, wrong = tree.root(2), hashlib.sha256(b"x").digest()
    column, line = (wrong, right) if forge == "column" else (right, wrong)
    note = f"tracemem.test/log\n2\n{base64.b64encode(line).decode()}\n\n— tracemem.test/log AAAAAAA=\n"
    result = psql_as_app(
        "INSERT INTO receiptlog_checkpoint (tree_size, root_hash, note, key_id, created_at) "
        f"VALUES (2, '\\x{column.hex()}', E'{note.replace(chr(10), chr(92) + 'n')}', 'k', now())"
    )
    assert result.returncode != 0
    assert "does not carry the root of the receipt log's first 2 leaves" in result.stderr, result.stderr
    assert Checkpoint.objects.count() == 1
    assert checkpoint_now() == 2  # the honest checkpoint of that size still goes in


def test_the_beat_signs_checkpoints_every_few_seconds_through_a_registered_task() -> None:
    from django.conf import settings

    from tracemem_site.celery import app as celery_app

    (entry,) = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "receiptlog.tick"]
    assert 0 < entry["schedule"] <= 10  # "at most every few seconds" (TRACEMEM_CHECKPOINT_SECONDS, default 5)
    celery_app.loader.import_default_modules()
    assert "receiptlog.tick" in celery_app.tasks


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_delays_a_witness_delivery_but_never_loses_or_repeats_it(
    api: AgentClient, httpserver: Any, settings: Any
) -> None:
    import base64
    import secrets

    from standardwebhooks import Webhook

    from approvals.models import WebhookEndpoint
    from receiptlog.models import WitnessDelivery
    from tests.fault_helpers import use_broker
    from tracemem_core import shared_cache
    from tracemem_site.celery import app as celery_app

    settings.TRACEMEM_LOG_WITNESSES = ["witness"]
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    WebhookEndpoint.objects.create(name="witness", url=httpserver.url_for("/w"), signing_secret=secret)
    httpserver.expect_request("/w", method="POST").respond_with_data("ok")
    before = (celery_app.conf.task_always_eager, celery_app.conf.broker_url)
    try:
        celery_app.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER = False
        use_broker("redis://127.0.0.1:1/0")  # nothing listens there
        close_decision(api)
        assert checkpoint_now() == 1  # the checkpoint is signed and its delivery recorded...
        delivery = WitnessDelivery.objects.get()
        assert (delivery.status, delivery.attempts) == ("pending", 0) and httpserver.log == []
        # ... and once the worker can be reached, the tick hands it over: delivered once.
        celery_app.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER = True
        shared_cache.broker.reset()
        assert checkpoint_now() is None
        assert checkpoint_now() is None
    finally:
        celery_app.conf.task_always_eager = before[0]
        use_broker(before[1])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
    [(request, _)] = httpserver.log
    payload = Webhook(secret).verify(request.get_data(as_text=True), dict(request.headers))
    assert payload["tree_size"] == 1 and payload["delivery_id"] == delivery.delivery_id


def test_log_verify_does_not_say_ok_when_the_checkpoint_directory_is_gone(
    api: AgentClient, tmp_path: Any, capsys: Any
) -> None:
    # The directory an operator ships is what catches a rewrite by someone who also holds the key;
    # if it vanished (deleted, unmounted, mistyped), "OK" would hide that nothing was compared.
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.test import override_settings

    shipped = tmp_path / "shipped"
    with override_settings(TRACEMEM_CHECKPOINT_DIR=str(shipped)):
        close_decision(api)
        assert checkpoint_now() == 1
        call_command("log_verify")
        capsys.readouterr()
        for path in shipped.iterdir():
            path.unlink()
        shipped.rmdir()
        with pytest.raises(CommandError):
            call_command("log_verify")
        assert f"checkpoint directory {shipped} does not exist" in capsys.readouterr().err
    with pytest.raises(CommandError):
        call_command("log_verify", "--checkpoint-dir", str(tmp_path / "typo"))
    assert f"checkpoint directory {tmp_path / 'typo'} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_checkpoint_interval_below_one_second_stops_the_server_at_start_up(value: str) -> None:
    # A zero or negative beat interval would sign a checkpoint after every close, not "at most every
    # few seconds" (Celery beat runs a schedule of 0 in a loop).
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tracemem_site.settings",
            "TRACEMEM_CHECKPOINT_SECONDS": value,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert (
        f"TRACEMEM_CHECKPOINT_SECONDS must be at least 1 (seconds between checkpoints), got {value}"
        in result.stderr
    )

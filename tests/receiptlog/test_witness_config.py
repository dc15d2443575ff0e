"""A mistake in the witness settings stops the server at start-up, naming the variable, instead of
showing up later as checkpoint deliveries that fail one by one (docs/receipts.md, "Witnesses and
the checkpoint directory").

* A name that can never be a webhook endpoint's (or one listed twice) is refused when the settings
  load: nothing starts.
* A name of an endpoint that does not exist is refused by the system check that ``manage.py
  migrate`` runs before every start (``scripts/run.sh``, the compose ``migrate`` job) and ``manage.py
  check --database default``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from approvals.models import WebhookEndpoint
from tracemem_site.settings import BASE_DIR


def start(witnesses: str) -> subprocess.CompletedProcess[str]:
    """Load the settings as every process does at start-up, with ``TRACEMEM_LOG_WITNESSES`` set."""
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tracemem_site.settings",
            "TRACEMEM_LOG_WITNESSES": witnesses,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("witnesses", "message"),
    [
        (
            "witness-a,https://witness.example/hook",
            "TRACEMEM_LOG_WITNESSES: 'https://witness.example/hook' is not a webhook endpoint name "
            "(letters, digits, '-' and '_', at most 64)",
        ),
        (
            "witness-a,witness-a",
            "TRACEMEM_LOG_WITNESSES names witness-a twice: each witness would get every checkpoint twice",
        ),
    ],
)
def test_a_witness_setting_that_cannot_be_right_stops_every_process_at_start_up(
    witnesses: str, message: str
) -> None:
    result = start(witnesses)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert start("witness-a, witness_b").returncode == 0


@pytest.mark.django_db
def test_a_witness_named_without_its_webhook_endpoint_fails_the_start_up_check() -> None:
    WebhookEndpoint.objects.create(name="witness-a", url="https://a.example/hook", signing_secret="whsec_x")
    with override_settings(TRACEMEM_LOG_WITNESSES=["witness-a", "witness-b", "witness-c"]):
        for command in ("migrate", "check"):
            with pytest.raises(SystemCheckError) as failed:
                if command == "migrate":  # as scripts/run.sh and the compose migrate job run it
                    call_command("migrate", skip_checks=False, verbosity=0)
                else:
                    call_command("check", databases=["default"])
            assert (
                "(receiptlog.E001) TRACEMEM_LOG_WITNESSES names webhook endpoints that do not exist: witness-b, "
                "witness-c; no checkpoint could be delivered to them."
            ) in str(failed.value), command
            assert (
                "HINT: Create them (POST /api/v1/admin/webhook-endpoints, apply_config or the Django admin"
                in str(failed.value)
            )
        # Without a database the check has nothing to read (manage.py check without --database).
        call_command("check")
    WebhookEndpoint.objects.create(name="witness-b", url="https://b.example/hook", signing_secret="whsec_x")
    with override_settings(TRACEMEM_LOG_WITNESSES=["witness-a", "witness-b"]):
        call_command("check", databases=["default"])

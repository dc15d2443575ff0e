"""apply_config's one dry-run rule: a dry run runs the real handlers and is rolled back, so it
refuses exactly what the real run refuses, with the same message, and changes nothing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from policies.models import Policy
from products.models import DataProduct, ProductGrant


def _refusal(path: Path, *args: str) -> str:
    with pytest.raises(CommandError) as caught:
        call_command("apply_config", str(path), *args, stdout=io.StringIO())
    return str(caught.value)


def _same_refusal(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    dry = _refusal(path, "--dry-run")
    real = _refusal(path)
    assert dry == real
    return real


@pytest.mark.django_db
def test_dry_run_refuses_a_product_definition_the_real_run_refuses(tmp_path: Path) -> None:
    message = _same_refusal(
        tmp_path,
        """
products:
  - product_id: pg_tiers_v1
    operation: read
    table: customers
    fields:
      - {name: tier, type: no_such_type}
    allowed_purposes: [analytics]
""",
    )
    assert "type" in message and "nothing was changed" in message
    assert not DataProduct.objects.exists()


@pytest.mark.django_db
def test_dry_run_refuses_a_grant_to_an_unknown_agent_like_the_real_run(tmp_path: Path) -> None:
    message = _same_refusal(
        tmp_path,
        """
products:
  - product_id: pg_tiers_v1
    operation: read
    table: customers
    fields:
      - {name: customer_id, column: id, type: integer, primary_key: true}
    allowed_purposes: [analytics]
    publish: true
grants:
  - agent: nobody-by-this-name
    products: [pg_tiers_v1]
""",
    )
    assert "nobody-by-this-name" in message
    assert not DataProduct.objects.exists() and not ProductGrant.objects.exists()


@pytest.mark.django_db
def test_dry_run_refuses_a_policy_id_the_real_run_refuses(tmp_path: Path) -> None:
    message = _same_refusal(
        tmp_path,
        """
policies:
  - policy_id: "Not A Valid Id!"
    name: Bad id
    rules:
      - {name: r, when: "true", outcome: allow}
""",
    )
    assert "policy_id" in message
    assert not Policy.objects.exists()


@pytest.mark.django_db
def test_dry_run_lines_say_what_the_real_run_does(tmp_path: Path, make_agent: Any) -> None:
    make_agent("tier-bot")
    path = tmp_path / "config.yaml"
    path.write_text(
        """
products:
  - product_id: pg_tiers_v1
    operation: read
    table: customers
    fields:
      - {name: customer_id, column: id, type: integer, primary_key: true}
    allowed_purposes: [analytics]
    publish: true
    grants: [tier-bot]
"""
    )
    dry = io.StringIO()
    call_command("apply_config", str(path), "--dry-run", stdout=dry)
    assert not DataProduct.objects.exists()
    real = io.StringIO()
    call_command("apply_config", str(path), stdout=real)
    dry_lines = dry.getvalue().splitlines()[:-1]
    real_lines = real.getvalue().splitlines()[:-1]
    assert dry_lines == [f"[dry-run] would {line}" for line in real_lines]

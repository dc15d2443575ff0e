"""``TRACEMEM_CHECKPOINT_DIR`` (issue 19): what an operator ships off the host is never partial and
its ``checkpoint`` file never goes back to an older tree size, whatever order the writes land in.

docs/receipts.md, "Witnesses and the checkpoint directory".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from receiptlog import services
from receiptlog.models import Checkpoint
from tests.conftest import AgentClient
from tests.receiptlog.test_server import close_decision, log_settings  # noqa: F401 - autouse fixture
from tracemem_core.actor import Actor

SYSTEM = Actor.system("test")


def note(size: int) -> Checkpoint:
    # Only tree_size and note are written; an unsaved row is enough.
    return Checkpoint(
        tree_size=size, root_hash=b"\x00" * 32, note=f"tracemem.test/log\n{size}\nroot\n\n— sig\n"
    )


def test_an_older_checkpoint_written_late_never_replaces_the_latest_file(tmp_path: Path) -> None:
    # Two workers: the one that signed size 3 runs its after-commit write after the one that
    # signed size 5 (the checkpoint lock is released at commit, before the files are written).
    with override_settings(TRACEMEM_CHECKPOINT_DIR=str(tmp_path)):
        services.checkpoint_export(note(5))
        services.checkpoint_export(note(3))
    assert (tmp_path / "checkpoint").read_text() == note(5).note
    assert (tmp_path / "checkpoint-3").read_text() == note(3).note
    assert (tmp_path / "checkpoint-5").read_text() == note(5).note


def test_a_failed_write_leaves_no_partial_or_temporary_file(tmp_path: Path, monkeypatch: Any) -> None:
    with override_settings(TRACEMEM_CHECKPOINT_DIR=str(tmp_path)):
        services.checkpoint_export(note(1))

        def full_disk(src: Any, dst: Any) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", full_disk)
        assert services.checkpoint_export(note(2)) is None
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".lock")) == [
        "checkpoint",
        "checkpoint-1",
    ]
    assert (tmp_path / "checkpoint").read_text() == note(1).note


@pytest.mark.django_db
def test_the_tick_repairs_a_latest_file_whose_write_failed(api: AgentClient, tmp_path: Path) -> None:
    with override_settings(TRACEMEM_CHECKPOINT_DIR=str(tmp_path)):
        close_decision(api)
        services.log_tick(actor=SYSTEM)
        close_decision(api)
        services.log_tick(actor=SYSTEM)
        latest = Checkpoint.objects.get(tree_size=2).note
        (tmp_path / "checkpoint").write_text(Checkpoint.objects.get(tree_size=1).note)  # its replace failed
        services.log_tick(actor=SYSTEM)
    assert (tmp_path / "checkpoint").read_text() == latest


@pytest.mark.django_db
def test_a_checkpoint_whose_write_failed_is_written_by_a_later_tick_even_after_newer_ones(
    api: AgentClient, tmp_path: Path, monkeypatch: Any
) -> None:
    # The disk was full while checkpoint 1 was signed; by the time it has room again, checkpoint 2
    # exists too. Both end up in the directory, not only the latest.
    real_replace = os.replace

    def full_disk(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    with override_settings(TRACEMEM_CHECKPOINT_DIR=str(tmp_path)):
        close_decision(api)
        monkeypatch.setattr(os, "replace", full_disk)
        services.log_tick(actor=SYSTEM)
        assert not (tmp_path / "checkpoint-1").exists()
        monkeypatch.setattr(os, "replace", real_replace)
        close_decision(api)
        services.log_tick(actor=SYSTEM)
    assert (tmp_path / "checkpoint-1").read_text() == Checkpoint.objects.get(tree_size=1).note
    assert (tmp_path / "checkpoint-2").read_text() == Checkpoint.objects.get(tree_size=2).note
    assert (tmp_path / "checkpoint").read_text() == Checkpoint.objects.get(tree_size=2).note

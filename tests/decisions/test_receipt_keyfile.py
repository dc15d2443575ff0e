"""The embedded default's receipt key file is created atomically: complete, 0600, never replaced."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

from decisions import receipts


def test_write_file_once_creates_a_complete_0600_file_and_never_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "var" / "key.pem"

    assert receipts.write_file_once(path, b"first key material\n") is True
    assert receipts.write_file_once(path, b"second key material\n") is False

    assert path.read_bytes() == b"first key material\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["key.pem"]  # no temporary file left behind


def test_processes_starting_together_all_sign_with_one_complete_key(tmp_path: Path) -> None:
    path = tmp_path / receipts.DEFAULT_KEY_FILENAME
    start = threading.Barrier(8)
    key_ids: list[str] = []
    errors: list[BaseException] = []

    def first_start() -> None:
        try:
            start.wait()
            receipts._generate_default_key(path)
            material = receipts._read_key_file(path, wait_seconds=5)
            private = receipts._parse_key_material(material, "test")
            key_ids.append(receipts.key_id_for(receipts.raw_public_key(private.public_key())))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=first_start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert len(key_ids) == 8 and len(set(key_ids)) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == [receipts.DEFAULT_KEY_FILENAME]


def test_a_reader_waits_while_the_key_file_is_still_empty(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"")

    def writer() -> None:
        time.sleep(0.3)
        path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")

    thread = threading.Thread(target=writer)
    thread.start()
    material = receipts._read_key_file(path, wait_seconds=5)
    thread.join()

    assert material == b"-----BEGIN PRIVATE KEY-----\n"

"""``python -m tracemem_verify RECEIPT.json [--trace TRACE.json] [--keys KEYS.json]``.

RECEIPT.json is a ``decision_receipt`` result or an evidence pack (which carries the receipt, the
trace and the keys published when it was made). KEYS.json is the server's
``/.well-known/tracemem/receipt-keys`` document. Prints one line, ``OK: …`` or ``FAIL: …``, and
exits 0 or 1 (2 for a usage error). Never imports Django.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from tracemem_verify.receipt import (
    Verdict,
    events_from_document,
    keys_from_document,
    verify_receipt,
    verify_trace_against,
)


def _load(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise _Failure(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise _Failure(f"{what} {path} is not JSON: {exc}") from None


class _Failure(Exception):
    pass


def verify(receipt_path: str, trace_path: str | None = None, keys_path: str | None = None) -> Verdict:
    """The whole check, as a value (the CLI prints it)."""
    try:
        document = _load(receipt_path, "receipt")
        if not isinstance(document, Mapping):
            return Verdict(False, f"{receipt_path} is not a receipt or an evidence pack (not a JSON object)")
        is_pack = isinstance(document.get("receipt"), Mapping)
        receipt = document["receipt"] if is_pack else document
        if is_pack is False and "receipt" in document:
            return Verdict(
                False, "the evidence pack has no receipt (the decision was not closed when it was made)"
            )
        key_note = ""
        if keys_path is not None:
            keys = keys_from_document(_load(keys_path, "keys file"))
        elif is_pack and "keys" in document:
            # Integrity only: a key shipped inside the document proves nothing about who signed it.
            keys = keys_from_document(document["keys"])
            key_note = " (key taken from the pack itself: pass --keys with the server's published keys to check who signed)"
        else:
            return Verdict(
                False, "no keys: pass --keys with the server's /.well-known/tracemem/receipt-keys JSON"
            )
        verdict = verify_receipt(receipt, keys)
        if not verdict.ok:
            return verdict
        messages = [verdict.message]
        events = None
        if trace_path is not None:
            events = events_from_document(_load(trace_path, "trace"))
        elif is_pack:
            events = events_from_document(document)
        if events is not None:
            trace_verdict = verify_trace_against(receipt["receipt_data"], events)
            if not trace_verdict.ok:
                return trace_verdict
            messages.append(trace_verdict.message)
        else:
            messages.append("trace not checked (pass --trace)")
        return Verdict(True, "; ".join(messages) + key_note)
    except _Failure as exc:
        return Verdict(False, str(exc))
    except ValueError as exc:
        return Verdict(False, str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tracemem_verify",
        description="Verify a TraceMem decision receipt (and its trace) offline.",
    )
    parser.add_argument("receipt", help="decision_receipt result or evidence pack (JSON file)")
    parser.add_argument("--trace", help="decision_trace result (JSON file) to recompute the hash chain")
    parser.add_argument("--keys", help="the server's /.well-known/tracemem/receipt-keys JSON")
    args = parser.parse_args(argv)
    verdict = verify(args.receipt, args.trace, args.keys)
    print(verdict)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())

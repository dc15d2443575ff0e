"""``python -m tracemem_verify RECEIPT.json [--trace TRACE.json] [--keys KEYS.json]``.

RECEIPT.json is a ``decision_receipt`` result or an evidence pack (which carries the receipt, the
trace and the keys published when it was made). KEYS.json is the server's
``/.well-known/tracemem/receipt-keys`` document. Prints one line, ``OK: …``, ``FAIL: …`` or
``UNVERIFIED: …``, and exits 0 (OK), 1 (FAIL), 2 (usage error) or 3 (UNVERIFIED: an evidence pack
checked only against the keys inside it, because ``--keys`` was not given). Never imports Django.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from tracemem_verify.pack import verify_pack_sections
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


EXIT_UNVERIFIED = 3


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
        embedded_keys = False
        if keys_path is not None:
            keys = keys_from_document(_load(keys_path, "keys file"))
        elif is_pack and "keys" in document:
            # Integrity only: a forger can put their own key in the pack, so this never says OK.
            keys = keys_from_document(document["keys"])
            embedded_keys = True
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
            if is_pack:
                # What a reader sees first (decision, approvals, policies) must be what was signed.
                sections_verdict = verify_pack_sections(document, receipt["receipt_data"], events)
                if not sections_verdict.ok:
                    return sections_verdict
                messages.append(sections_verdict.message)
        else:
            messages.append("trace not checked (pass --trace)")
        if embedded_keys:
            return Verdict(
                False,
                "the pack is self-consistent (" + "; ".join(messages) + ") but was checked only against "
                "the key inside the pack, which anyone can put there; pass --keys with the server's "
                "published keys (/.well-known/tracemem/receipt-keys) to know who signed it",
                unverified=True,
            )
        return Verdict(True, "; ".join(messages))
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
    if verdict.ok:
        return 0
    return EXIT_UNVERIFIED if verdict.unverified else 1


if __name__ == "__main__":
    sys.exit(main())

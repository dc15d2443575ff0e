"""``python -m tracemem_verify RECEIPT.json [--trace TRACE.json ...] [--keys KEYS.json]``, and the log:

``python -m tracemem_verify inclusion DOCUMENT.json --keys KEYS.json [--checkpoint CKPT] [--proof P.json]``
``python -m tracemem_verify consistency OLD_CKPT NEW_CKPT --keys KEYS.json [--proof PROOF.json]``

A long trace comes in pages (``decision_trace`` with ``after_seq``/``limit``): pass every page, in
order, each with its own ``--trace``; the chain is recomputed across them.

RECEIPT.json is a ``decision_receipt`` result or an evidence pack (which carries the receipt, the
trace and the keys published when it was made). KEYS.json is the server's
``/.well-known/tracemem/receipt-keys`` document. ``inclusion`` checks that a receipt is a leaf of
the log in a signed checkpoint; ``consistency`` that a newer checkpoint extends an older one
(``tracemem_verify.log``). Prints one line, ``OK: …``, ``FAIL: …`` or ``UNVERIFIED: …``, and exits
0 (OK), 1 (FAIL), 2 (usage error) or 3 (UNVERIFIED: an evidence pack checked only against the keys
inside it, because ``--keys`` was not given). Never imports Django.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from tracemem_verify import jsondepth
from tracemem_verify.log import (
    consistency_from_document,
    inclusion_from_document,
    verify_consistency_verdict,
    verify_inclusion_verdict,
)
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
            return jsondepth.load(handle)
    except OSError as exc:
        raise _Failure(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise _Failure(f"{what} {path} is not JSON: {exc}") from None


EXIT_UNVERIFIED = 3


class _Failure(Exception):
    pass


def _trace_events(paths: list[str]) -> list[Mapping[str, Any]]:
    """The events of one or more trace files (pages, in order); a trace that stops at a page with
    more to come is refused with how to fetch the rest."""
    events: list[Mapping[str, Any]] = []
    document: Any = None
    for path in paths:
        document = _load(path, "trace")
        events += events_from_document(document)
    more = document.get("next_after_seq") if isinstance(document, Mapping) else None
    if more is not None:
        raise _Failure(
            f"trace {paths[-1]} is one page and more follow (next_after_seq={more}): fetch the rest with "
            f"?after_seq={more} and pass every page, in order, each with --trace"
        )
    return events


def verify(
    receipt_path: str, trace_path: str | list[str] | None = None, keys_path: str | None = None
) -> Verdict:
    """The whole check, as a value (the CLI prints it). ``trace_path`` may list a trace's pages."""
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
        if trace_path:
            events = _trace_events([trace_path] if isinstance(trace_path, str) else trace_path)
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


def _read_checkpoint(path: str, what: str) -> bytes:
    """A checkpoint file: the signed note as served, or a JSON object with a ``checkpoint`` field."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise _Failure(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if raw.lstrip().startswith(b"{"):
        document = _load(path, what)
        text = document.get("checkpoint") if isinstance(document, Mapping) else None
        if not isinstance(text, str):
            raise _Failure(f"{what} {path} is JSON without a checkpoint field")
        return text.encode("utf-8")
    return raw


def verify_inclusion(
    document_path: str, keys_path: str, checkpoint_path: str | None = None, proof_path: str | None = None
) -> Verdict:
    """``inclusion``: the receipt, the checkpoint and the audit path, as a value."""
    try:
        document = _load(document_path, "document")
        if not isinstance(document, Mapping):
            return Verdict(
                False, f"{document_path} is not an inclusion proof, a receipt or a pack (not a JSON object)"
            )
        if "audit_path" in document:  # the /inclusion document, which carries its receipt
            proof_document: Any = document
            receipt = document.get("receipt")
        else:  # a receipt or an evidence pack, with the proof inside or in --proof
            receipt = document["receipt"] if isinstance(document.get("receipt"), Mapping) else document
            proof_document = document.get("inclusion")
        if proof_path is not None:
            proof_document = _load(proof_path, "inclusion proof")
        if not isinstance(receipt, Mapping) or "receipt_data" not in receipt:
            return Verdict(False, f"{document_path} carries no receipt (decision_receipt result)")
        if proof_document is None:
            # A decision_receipt result or pack says why it has none (pending: fetch it again soon).
            status = document.get("inclusion_status")
            why = f" (inclusion_status {status}: {document.get('inclusion_reason')})" if status else ""
            return Verdict(
                False,
                f"{document_path} carries no inclusion proof{why}; pass --proof with the JSON of "
                "GET /api/v1/decisions/{id}/inclusion",
            )
        keys = keys_from_document(_load(keys_path, "keys file"))
        checkpoint = None if checkpoint_path is None else _read_checkpoint(checkpoint_path, "checkpoint")
        return verify_inclusion_verdict(receipt, inclusion_from_document(proof_document), keys, checkpoint)
    except (_Failure, ValueError) as exc:
        return Verdict(False, str(exc))


def verify_consistency(
    old_path: str, new_path: str, keys_path: str, proof_path: str | None = None
) -> Verdict:
    """``consistency``: both checkpoints' signatures, then the proof that the new extends the old."""
    try:
        keys = keys_from_document(_load(keys_path, "keys file"))
        old = _read_checkpoint(old_path, "old checkpoint")
        new = _read_checkpoint(new_path, "new checkpoint")
        proof = (
            None if proof_path is None else consistency_from_document(_load(proof_path, "consistency proof"))
        )
        return verify_consistency_verdict(old, new, proof, keys)
    except (_Failure, ValueError) as exc:
        return Verdict(False, str(exc))


LOG_COMMANDS = ("inclusion", "consistency")
KEYS_HELP = "the server's /.well-known/tracemem/receipt-keys JSON"


def _log_main(argv: list[str]) -> Verdict:
    parser = argparse.ArgumentParser(
        prog="python -m tracemem_verify",
        description="Verify TraceMem's receipt log offline: inclusion of a receipt, consistency of checkpoints.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    inclusion = commands.add_parser("inclusion", help="a receipt is a leaf of the log in a signed checkpoint")
    inclusion.add_argument(
        "document",
        help="GET /api/v1/decisions/{id}/inclusion JSON, a decision_receipt result or an evidence pack",
    )
    inclusion.add_argument("--keys", required=True, help=KEYS_HELP)
    inclusion.add_argument(
        "--checkpoint", help="a checkpoint you hold (as served at /.well-known/tracemem/checkpoint)"
    )
    inclusion.add_argument(
        "--proof", help="the inclusion JSON, when DOCUMENT is a receipt or pack without one"
    )
    consistency = commands.add_parser(
        "consistency", help="a newer checkpoint is an append-only extension of an older one"
    )
    consistency.add_argument("old_checkpoint", help="the checkpoint you kept")
    consistency.add_argument("new_checkpoint", help="a newer checkpoint")
    consistency.add_argument("--keys", required=True, help=KEYS_HELP)
    consistency.add_argument("--proof", help="GET /api/v1/log/consistency?from=OLD&to=NEW JSON")
    args = parser.parse_args(argv)
    if args.command == "inclusion":
        return verify_inclusion(args.document, args.keys, args.checkpoint, args.proof)
    return verify_consistency(args.old_checkpoint, args.new_checkpoint, args.keys, args.proof)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in LOG_COMMANDS:
        verdict = _log_main(argv)
    else:
        parser = argparse.ArgumentParser(
            prog="python -m tracemem_verify",
            description="Verify a TraceMem decision receipt (and its trace) offline.",
            epilog="The receipt log: python -m tracemem_verify {inclusion,consistency} --help",
        )
        parser.add_argument("receipt", help="decision_receipt result or evidence pack (JSON file)")
        parser.add_argument(
            "--trace",
            action="append",
            help="decision_trace result (JSON file) to recompute the hash chain; repeat it for each page, in order",
        )
        parser.add_argument("--keys", help="the server's /.well-known/tracemem/receipt-keys JSON")
        args = parser.parse_args(argv)
        verdict = verify(args.receipt, args.trace, args.keys)
    print(verdict)
    if verdict.ok:
        return 0
    return EXIT_UNVERIFIED if verdict.unverified else 1


if __name__ == "__main__":
    sys.exit(main())

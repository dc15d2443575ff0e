"""``tracemem``: a small command line for people, on top of the client.

    tracemem decisions list|show|trace      (agent key: TRACEMEM_API_KEY or --api-key)
    tracemem approvals list|approve|reject  (personal token: TRACEMEM_TOKEN or --token)
    tracemem verify DECISION_ID             (agent key; runs the offline verifier on what it fetches)

The server is ``TRACEMEM_URL`` or ``--url``. Prefer the environment for secrets: flags show up in
process lists and shell history. ``--json`` prints the server's objects as they are.
Exit codes: 0 done / verified, 1 refused by the server / verification FAILED, 2 usage or setup error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tracemem_client.client import Client, ReviewerClient
from tracemem_client.errors import TraceMemError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

VERIFIER_MISSING = (
    "tracemem verify needs the offline verifier `tracemem_verify`, which ships with the TraceMem "
    "server's repository (the tracemem_verify/ directory; it needs `cryptography` and `rfc8785`). "
    "Run this from a TraceMem checkout or put it on PYTHONPATH, e.g. "
    "PYTHONPATH=/path/to/tracemem tracemem verify ...; or use --save DIR and run "
    "`python -m tracemem_verify` there."
)


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracemem",
        description="TraceMem from the command line: decisions (agent key), approvals (personal token), verify.",
        epilog="Settings: TRACEMEM_URL, TRACEMEM_API_KEY, TRACEMEM_TOKEN (prefer them to the flags: flags "
        "show up in process lists). Exit codes: 0 done/verified, 1 refused/FAILED, 2 usage or setup.",
    )
    parser.add_argument("--url", help="server URL (default: $TRACEMEM_URL)")
    parser.add_argument("--api-key", help="agent key tmem_… (default: $TRACEMEM_API_KEY)")
    parser.add_argument("--token", help="personal access token tmpat_… (default: $TRACEMEM_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print the server's JSON")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    groups = parser.add_subparsers(dest="group", required=True)

    decisions = groups.add_parser("decisions", help="this agent's decisions (agent key)")
    dcmd = decisions.add_subparsers(dest="command", required=True)
    listing = dcmd.add_parser(
        "list",
        help="this agent's recorded engineering decisions (decision_search)",
        description="Lists decision_record entries (decision_search). The REST API has no listing of "
        "envelope decisions for agents yet; use `show ID` / `trace ID` for those.",
    )
    listing.add_argument("--query")
    listing.add_argument("--category")
    listing.add_argument("--tag", action="append", dest="tags")
    listing.add_argument("--status", help="a decision status, or active / superseded")
    listing.add_argument("--limit", type=int)
    show = dcmd.add_parser("show", help="decision_get")
    show.add_argument("decision_id")
    trace = dcmd.add_parser("trace", help="every event of the decision's trace, in order")
    trace.add_argument("decision_id")
    trace.add_argument("--page-size", type=int, help="events per request on servers with trace pages")

    approvals = groups.add_parser("approvals", help="approvals waiting for you (personal token)")
    acmd = approvals.add_subparsers(dest="command", required=True)
    alist = acmd.add_parser("list", help="approvals you can see (default: pending)")
    alist.add_argument(
        "--status", default="pending", help="pending | approved | rejected | expired | cancelled | all"
    )
    for name in ("approve", "reject"):
        vote = acmd.add_parser(name, help=f"{name} an approval")
        vote.add_argument("approval_id")
        vote.add_argument("--rationale", help="why (some routes require one)")

    verify = groups.add_parser(
        "verify",
        help="fetch a closed decision's receipt, trace and the server's keys, and verify them offline",
    )
    verify.add_argument("decision_id")
    verify.add_argument(
        "--keys", help="receipt keys JSON you hold (default: fetch /.well-known/tracemem/receipt-keys)"
    )
    verify.add_argument("--save", help="also write receipt.json, trace.json, keys.json to this directory")
    return parser


def _setting(flag: str | None, env: str, what: str) -> str:
    value = flag or os.environ.get(env)
    if not value:
        raise UsageError(f"{what} is not set: export {env}=… (or pass the flag)")
    return value


def _agent(args: argparse.Namespace) -> Client:
    url = _setting(args.url, "TRACEMEM_URL", "the server URL")
    return Client(url, _setting(args.api_key, "TRACEMEM_API_KEY", "the agent key"), timeout=args.timeout)


def _reviewer(args: argparse.Namespace) -> ReviewerClient:
    url = _setting(args.url, "TRACEMEM_URL", "the server URL")
    token = _setting(args.token, "TRACEMEM_TOKEN", "the personal access token")
    return ReviewerClient(url, token, timeout=args.timeout)


def _dump(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _table(rows: list[list[str]], headers: list[str], out: TextIO) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        out.write(
            "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
            + "\n"
        )


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decisions(args: argparse.Namespace, out: TextIO) -> int:
    with _agent(args) as client:
        if args.command == "list":
            found = client.decision_search(
                query=args.query, category=args.category, tags=args.tags, status=args.status, limit=args.limit
            )
            if args.json:
                _dump(found, out)
            else:
                rows = [
                    [r["decision_id"], r["status"], r["category"], r["created_at"], r["title"]]
                    for r in found["results"]
                ]
                _table(rows, ["DECISION", "STATUS", "CATEGORY", "CREATED", "TITLE"], out)
            return EXIT_OK
        if args.command == "show":
            decision = client.decision_get(args.decision_id)
            if args.json:
                _dump(decision, out)
            else:
                for key, value in decision.items():
                    out.write(f"{key}: {_short(value, 200) if isinstance(value, dict | list) else value}\n")
            return EXIT_OK
        trace = client.decision_trace_all(args.decision_id, page_size=args.page_size)
        if args.json:
            _dump(trace, out)
        else:
            out.write(f"{trace['decision_id']}  {trace['intent']}  {trace['status']}\n")
            rows = [
                [
                    str(e["seq"]),
                    e["timestamp"],
                    e["type"],
                    f"{e['actor']['kind']}:{e['actor']['name']}",
                    _short(e["payload"]),
                ]
                for e in trace["events"]
            ]
            _table(rows, ["SEQ", "TIMESTAMP", "TYPE", "ACTOR", "PAYLOAD"], out)
        return EXIT_OK


def _approvals(args: argparse.Namespace, out: TextIO) -> int:
    with _reviewer(args) as reviewer:
        if args.command == "list":
            found = reviewer.approvals_list(None if args.status == "all" else args.status)
            if args.json:
                _dump(found, out)
            else:
                rows = [
                    [
                        a["approval_id"],
                        a["status"],
                        a["decision_id"],
                        a["intent"],
                        a["agent"]["name"],
                        a["title"],
                    ]
                    for a in found["approvals"]
                ]
                _table(rows, ["APPROVAL", "STATUS", "DECISION", "INTENT", "AGENT", "TITLE"], out)
            return EXIT_OK
        vote = reviewer.approval_approve if args.command == "approve" else reviewer.approval_reject
        approval = vote(args.approval_id, args.rationale)
        if args.json:
            _dump(approval, out)
        else:
            out.write(
                f"{approval['approval_id']}: {approval['status']} (decision {approval['decision_id']})\n"
            )
        return EXIT_OK


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    try:  # imported by name: the verifier is not a dependency of this package
        offline_verify = importlib.import_module("tracemem_verify.__main__").verify
    except ImportError:
        offline_verify = None
    with _agent(args) as client:
        documents: dict[str, Any] = {
            "receipt.json": client.decision_receipt(args.decision_id),
            "trace.json": client.decision_trace_all(args.decision_id),
        }
        if args.keys is None:
            documents["keys.json"] = client.receipt_keys()
        keys_origin = args.keys or f"{client.base_url}/.well-known/tracemem/receipt-keys"
    if args.save:
        target = Path(args.save)
        target.mkdir(parents=True, exist_ok=True)
        for name, document in documents.items():
            (target / name).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
        keys_path = args.keys or str(target / "keys.json")
        out.write(
            f"saved to {target}/; offline: python -m tracemem_verify {target}/receipt.json "
            f"--trace {target}/trace.json --keys {keys_path}\n"
        )
    if offline_verify is None:
        raise UsageError(VERIFIER_MISSING)
    with tempfile.TemporaryDirectory(prefix="tracemem-verify-") as scratch:
        for name, document in documents.items():
            Path(scratch, name).write_text(json.dumps(document), "utf-8")
        verdict = offline_verify(
            str(Path(scratch, "receipt.json")),
            str(Path(scratch, "trace.json")),
            args.keys or str(Path(scratch, "keys.json")),
        )
    out.write(f"{verdict}\n")
    out.write(
        f"keys: {keys_origin}"
        + ("" if args.keys else " (pass --keys FILE to check against keys you hold)")
        + "\n"
    )
    return EXIT_OK if verdict.ok else EXIT_FAILED


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    stream = out if out is not None else sys.stdout
    args = _parser().parse_args(argv)
    commands = {"decisions": _decisions, "approvals": _approvals, "verify": _verify}
    try:
        return commands[args.group](args, stream)
    except UsageError as exc:
        sys.stderr.write(f"tracemem: {exc}\n")
        return EXIT_USAGE
    except ValueError as exc:  # a malformed --url
        sys.stderr.write(f"tracemem: {exc}\n")
        return EXIT_USAGE
    except TraceMemError as exc:
        sys.stderr.write(f"tracemem: {exc}\n")
        return EXIT_FAILED

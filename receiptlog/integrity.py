"""What ``manage.py log_verify`` checks: the receipt log recomputed from the receipts.

Every leaf must be the hash of its decision's stored receipt (whose signature must verify), every
stored subtree hash the one recomputed from those leaves, every receipt must be a leaf, and every
checkpoint — stored, in ``TRACEMEM_CHECKPOINT_DIR``, or given as a file (one an auditor or a witness
kept) — must be signed by a published key and carry the root recomputed for its tree size. A
rewritten history fails the last check for every checkpoint made before the rewrite.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from decisions.models import Receipt
from decisions.receipts import receipt_keys_published, receipt_out
from receiptlog.models import Checkpoint, LogLeaf
from tracemem_verify import merkle
from tracemem_verify.checkpoint import NoteError, NoteVerificationError
from tracemem_verify.log import open_log_checkpoint, receipt_leaf_hash
from tracemem_verify.receipt import verify_receipt


@dataclass
class LogReport:
    leaves: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)


def _trailing_ones(value: int) -> int:
    return (~value & (value + 1)).bit_length() - 1


def checkpoint_files(directory: str | Path | None) -> list[Path]:
    """The checkpoint files of a ``TRACEMEM_CHECKPOINT_DIR`` (hidden temporary files left out)."""
    if not directory or not Path(directory).is_dir():
        return []
    return sorted(p for p in Path(directory).iterdir() if p.is_file() and not p.name.startswith("."))


def log_verify(*, files: Iterable[Path] = (), keys: list[dict[str, object]] | None = None) -> LogReport:
    """``keys``: a keys document kept off the database (``--keys``); by default the published keys,
    which are rows of the database itself, so a superuser can add one (docs/receipts.md)."""
    report = LogReport()
    keys = receipt_keys_published() if keys is None else keys
    tree = merkle.MemoryTree()
    for leaf in LogLeaf.objects.select_related("receipt").order_by("leaf_index").iterator(chunk_size=2000):
        index = tree.size
        where = f"leaf {leaf.leaf_index} (decision {leaf.receipt_id})"
        if leaf.leaf_index != index:
            report.problems.append(f"leaf {index} is missing: the next stored leaf is {leaf.leaf_index}")
            break
        receipt = receipt_out(leaf.receipt)
        value = receipt_leaf_hash(receipt)
        if bytes(leaf.leaf_hash) != value:
            report.problems.append(
                f"{where}: its stored hash is not the hash of the decision's stored receipt"
            )
        verdict = verify_receipt(receipt, keys)
        if not verdict.ok:
            report.problems.append(f"{where}: its receipt does not verify: {verdict.message}")
        tree.append_hash(value)
        stored = bytes(leaf.subtree_hashes)
        recomputed = b"".join(tree.node(h, index >> h) for h in range(1, _trailing_ones(index) + 1))
        if stored != recomputed:
            report.problems.append(
                f"{where}: its stored subtree hashes are not the ones recomputed from the receipts"
            )
    report.leaves = tree.size
    for decision_id in Receipt.objects.filter(log_leaf__isnull=True).values_list("decision_id", flat=True):
        report.problems.append(f"the receipt of decision {decision_id} is not in the receipt log")
    for checkpoint in Checkpoint.objects.order_by("tree_size"):
        report.checkpoints += 1
        label = f"stored checkpoint of tree size {checkpoint.tree_size}"
        _check(report, tree, keys, checkpoint.note, label, stored_root=bytes(checkpoint.root_hash))
    for path in files:
        report.checkpoints += 1
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            report.problems.append(f"checkpoint file {path}: cannot be read: {exc}")
            continue
        _check(report, tree, keys, text, f"checkpoint file {path}")
    return report


def _check(
    report: LogReport,
    tree: merkle.MemoryTree,
    keys: list[dict[str, object]],
    text: str,
    label: str,
    stored_root: bytes | None = None,
) -> None:
    try:
        checkpoint = open_log_checkpoint(text, keys).checkpoint
    except (NoteError, NoteVerificationError, ValueError) as exc:
        report.problems.append(f"{label}: not a checkpoint signed by a published receipt key: {exc}")
        return
    if stored_root is not None and stored_root != checkpoint.root_hash:
        report.problems.append(f"{label}: its root_hash column differs from the root in its signed note")
    if checkpoint.size > tree.size:
        report.problems.append(
            f"{label}: history rewritten: it covers {checkpoint.size} leaves but the receipts rebuild only "
            f"{tree.size} (leaves were removed)"
        )
        return
    recomputed = tree.root(checkpoint.size)
    if recomputed != checkpoint.root_hash:
        report.problems.append(
            f"{label}: history rewritten: it signs root {merkle.short(checkpoint.root_hash)} for tree size "
            f"{checkpoint.size}, but the receipts in the database rebuild root {merkle.short(recomputed)}"
        )

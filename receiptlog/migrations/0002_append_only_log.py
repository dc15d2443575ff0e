"""Issue 19: the receipt log is append-only and consistent, enforced by PostgreSQL itself.

Plain SQL triggers owned by the table owner and ENABLE ALWAYS, in the style of ``decisions 0003``
(docs/security.md): no session setting skips them, the app role can neither drop nor disable them,
and ``tracemem_core.dbroles.APPEND_ONLY_TABLES`` grants it only SELECT and INSERT on both tables.

* ``receiptlog_logleaf`` and ``receiptlog_checkpoint``: UPDATE, DELETE and TRUNCATE refused;
* a leaf must be the next one (``leaf_index`` = the last + 1, appends queue on the log's advisory
  lock) and carry exactly the perfect subtree hashes it completes, each recomputed here with
  ``sha256(0x01 || left || right)`` from the stored nodes;
* a receipt cannot commit without its leaf (a deferred constraint trigger on ``decisions_receipt``);
* a checkpoint must be larger than every earlier one, no larger than the log, and its ``root_hash``
  (and the root line of its note) must be the RFC 9162 root recomputed here from the stored nodes.

What the database cannot recompute is a leaf hash (RFC 8785 of the receipt) and a signature:
``manage.py log_verify`` does, from the receipts. Receipts issued before this migration become the
first leaves, in close order. SQLite (the embedded default) gets the append-only triggers only.
"""

from django.db import migrations

from tracemem_core.migration_ops import AppendOnly, VendorSQL, enable_always

LOG_LOCK = int.from_bytes(b"tm-rlog", "big")

PG = [
    # Node (level, idx) of the tree: the hash of the 2**level leaves from idx * 2**level, stored in
    # the leaf that completes it (receiptlog.models.LogLeaf).
    """
CREATE FUNCTION tracemem_log_node(level integer, idx bigint) RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN level = 0 THEN leaf_hash
                ELSE substring(subtree_hashes FROM (level - 1) * 32 + 1 FOR 32) END
    FROM receiptlog_logleaf WHERE leaf_index = ((idx + 1) << level) - 1
$$""",
    f"""
CREATE FUNCTION tracemem_log_leaf_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_index bigint;
    node bytea;
    sibling bytea;
    h integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock({LOG_LOCK});
    SELECT leaf_index INTO last_index FROM receiptlog_logleaf ORDER BY leaf_index DESC LIMIT 1;
    IF NEW.leaf_index IS DISTINCT FROM COALESCE(last_index, -1) + 1 THEN
        RAISE EXCEPTION 'tracemem: leaf % does not continue the receipt log (the next leaf is %)',
            NEW.leaf_index, COALESCE(last_index, -1) + 1;
    END IF;
    IF length(NEW.leaf_hash) IS DISTINCT FROM 32 THEN
        RAISE EXCEPTION 'tracemem: a leaf hash is 32 bytes';
    END IF;
    node := NEW.leaf_hash;
    WHILE ((NEW.leaf_index >> h) & 1) = 1 LOOP
        sibling := tracemem_log_node(h, (NEW.leaf_index >> h) - 1);
        IF sibling IS NULL OR length(sibling) <> 32 THEN
            RAISE EXCEPTION 'tracemem: the receipt log lacks node (level %, index %)', h, (NEW.leaf_index >> h) - 1;
        END IF;
        node := sha256('\\x01'::bytea || sibling || node);
        IF substring(NEW.subtree_hashes FROM h * 32 + 1 FOR 32) IS DISTINCT FROM node THEN
            RAISE EXCEPTION 'tracemem: leaf % carries a wrong subtree hash at level %', NEW.leaf_index, h + 1;
        END IF;
        h := h + 1;
    END LOOP;
    IF length(NEW.subtree_hashes) <> h * 32 THEN
        RAISE EXCEPTION 'tracemem: leaf % completes % subtrees, not %', NEW.leaf_index, h, length(NEW.subtree_hashes) / 32;
    END IF;
    RETURN NEW;
END
$$""",
    "CREATE TRIGGER tracemem_log_leaf_chain BEFORE INSERT ON receiptlog_logleaf "
    "FOR EACH ROW EXECUTE FUNCTION tracemem_log_leaf_insert()",
    """
CREATE FUNCTION tracemem_receipt_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM receiptlog_logleaf WHERE decision_id = NEW.decision_id) THEN
        RAISE EXCEPTION 'tracemem: the receipt of decision % is not in the receipt log: it is appended in its close transaction',
            NEW.decision_id;
    END IF;
    RETURN NULL;
END
$$""",
    "CREATE CONSTRAINT TRIGGER tracemem_receipt_logged AFTER INSERT ON decisions_receipt "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tracemem_receipt_logged()",
    """
CREATE FUNCTION tracemem_log_checkpoint_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_size bigint;
    leaves bigint;
    parts bytea[] := ARRAY[]::bytea[];
    start bigint := 0;
    root bytea;
    part bytea;
    i integer;
BEGIN
    SELECT tree_size INTO last_size FROM receiptlog_checkpoint ORDER BY tree_size DESC LIMIT 1;
    IF last_size IS NOT NULL AND NEW.tree_size <= last_size THEN
        RAISE EXCEPTION 'tracemem: a checkpoint of tree size % cannot follow one of tree size %', NEW.tree_size, last_size;
    END IF;
    SELECT COALESCE(MAX(leaf_index), -1) + 1 INTO leaves FROM receiptlog_logleaf;
    IF NEW.tree_size > leaves THEN
        RAISE EXCEPTION 'tracemem: a checkpoint of tree size % but the receipt log has % leaves', NEW.tree_size, leaves;
    END IF;
    IF NEW.tree_size = 0 THEN
        root := sha256(''::bytea);
    ELSE
        -- RFC 9162: the perfect subtrees of the first tree_size leaves, largest first, folded from the right.
        FOR b IN REVERSE 62..0 LOOP
            IF ((NEW.tree_size >> b) & 1) = 1 THEN
                part := tracemem_log_node(b, start >> b);
                IF part IS NULL OR length(part) <> 32 THEN
                    RAISE EXCEPTION 'tracemem: the receipt log lacks node (level %, index %)', b, start >> b;
                END IF;
                parts := parts || part;
                start := start + (1::bigint << b);
            END IF;
        END LOOP;
        root := parts[array_length(parts, 1)];
        FOR i IN REVERSE array_length(parts, 1) - 1..1 LOOP
            root := sha256('\\x01'::bytea || parts[i] || root);
        END LOOP;
    END IF;
    IF NEW.root_hash IS DISTINCT FROM root
       OR split_part(NEW.note, E'\\n', 2) IS DISTINCT FROM NEW.tree_size::text
       OR split_part(NEW.note, E'\\n', 3) IS DISTINCT FROM encode(root, 'base64') THEN
        RAISE EXCEPTION 'tracemem: the checkpoint of tree size % does not carry the root of the receipt log''s first % leaves',
            NEW.tree_size, NEW.tree_size;
    END IF;
    RETURN NEW;
END
$$""",
    "CREATE TRIGGER tracemem_log_checkpoint_chain BEFORE INSERT ON receiptlog_checkpoint "
    "FOR EACH ROW EXECUTE FUNCTION tracemem_log_checkpoint_insert()",
    *enable_always("receiptlog_logleaf", "tracemem_log_leaf_chain"),
    *enable_always("receiptlog_checkpoint", "tracemem_log_checkpoint_chain"),
    *enable_always("decisions_receipt", "tracemem_receipt_logged"),
    # Names resolve in pg_catalog, TraceMem's schema, and the session's temporary schema last
    # (tracemem_core.migration_ops.pin_search_path, here with the node function's arguments).
    "DO $$ BEGIN "
    + " ".join(
        f"EXECUTE format('ALTER FUNCTION {signature} SET search_path = pg_catalog, %I, pg_temp', current_schema());"
        for signature in (
            "tracemem_log_node(integer, bigint)",
            "tracemem_log_leaf_insert()",
            "tracemem_receipt_logged()",
            "tracemem_log_checkpoint_insert()",
        )
    )
    + " END $$",
]
PG_DROP = [
    "DROP TRIGGER tracemem_log_leaf_chain ON receiptlog_logleaf",
    "DROP TRIGGER tracemem_log_checkpoint_chain ON receiptlog_checkpoint",
    "DROP TRIGGER tracemem_receipt_logged ON decisions_receipt",
    "DROP FUNCTION tracemem_log_leaf_insert()",
    "DROP FUNCTION tracemem_log_checkpoint_insert()",
    "DROP FUNCTION tracemem_receipt_logged()",
    "DROP FUNCTION tracemem_log_node(integer, bigint)",
]


def log_existing_receipts(apps, schema_editor):
    """Append the receipts issued before the log existed, in close order."""
    from tracemem_core.timefmt import iso_z
    from tracemem_verify.log import receipt_leaf_hash
    from tracemem_verify.merkle import MemoryTree

    Receipt = apps.get_model("decisions", "Receipt")
    LogLeaf = apps.get_model("receiptlog", "LogLeaf")
    receipts = sorted(
        Receipt.objects.filter(log_leaf__isnull=True),
        key=lambda r: (r.receipt_data.get("closed_at") or "", iso_z(r.signed_at), r.decision_id),
    )
    if not receipts:
        return
    tree = MemoryTree()
    for receipt in receipts:
        data = receipt.receipt_data
        value = receipt_leaf_hash(
            {
                "decision_id": receipt.decision_id,
                "status": data["status"],
                "receipt_data": data,
                "signature": receipt.signature,
                "key_id": receipt.key_id,
                "algorithm": receipt.algorithm,
                "signed_at": iso_z(receipt.signed_at),
            }
        )
        index = tree.append_hash(value)
        completes = (~index & (index + 1)).bit_length() - 1
        LogLeaf.objects.create(
            leaf_index=index,
            receipt=receipt,
            leaf_hash=value,
            subtree_hashes=b"".join(tree.node(h, index >> h) for h in range(1, completes + 1)),
        )


class Migration(migrations.Migration):
    dependencies = [("receiptlog", "0001_initial")]

    operations = [
        migrations.RunPython(log_existing_receipts, migrations.RunPython.noop),
        AppendOnly("receiptlog_logleaf"),
        AppendOnly("receiptlog_checkpoint"),
        VendorSQL(forwards={"postgresql": PG}, backwards={"postgresql": PG_DROP}),
    ]

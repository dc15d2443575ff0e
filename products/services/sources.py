"""Data sources (docs/contract/data-products.md): where a product's table lives; DSNs are encrypted at rest and never shown."""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction

from audit.services import audit_record
from products import dsn as dsn_rules
from products.models import (
    BUILTIN_SOURCE,
    DataSource,
    SourceKind,
)
from tracemem_core import crypto
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    Conflict,
    InvalidArgument,
    InvalidState,
    NotFound,
)
from tracemem_core.permissions import require_perm

SOURCE_ID_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
# --- data sources ---------------------------------------------------------------------------


def data_source_builtin() -> DataSource:
    """The built-in source (the app's own database); created on first use."""
    source, _ = DataSource.objects.get_or_create(
        source_id=BUILTIN_SOURCE,
        defaults={"name": "TraceMem's own database", "kind": SourceKind.BUILTIN},
    )
    return source


def clean_dsn(dsn: Any) -> str:
    """A DSN a data source may use (``products.dsn``: one network host the outbound rules allow,
    allow-listed options only), as its display form without the password. Errors name the rule and
    never repeat the DSN."""
    return dsn_rules.check(v.string(dsn, "dsn", max_length=2000)).display()


def _source_audit(source: DataSource) -> dict[str, Any]:
    """What the audit log keeps of a source: never the DSN, only its displayed (password-free) part."""
    return {
        "source_id": source.source_id,
        "name": source.name,
        "kind": source.kind,
        "dsn_display": source.dsn_display,
    }


def _stored_dsn(source: DataSource) -> str | None:
    """The DSN stored now, to tell an equal one from a replacement; None if there is none or it can
    no longer be decrypted (then the new one replaces it)."""
    if not source.dsn_encrypted:
        return None
    try:
        return crypto.decrypt(source.dsn_encrypted)
    except InvalidState:
        return None


@transaction.atomic
def data_source_save(*, actor: Actor, source_id: Any, name: Any = None, dsn: Any = None) -> DataSource:
    """Create or update an external PostgreSQL source. ``dsn`` is write-only: stored encrypted and
    never returned; omit it on update to keep the stored one."""
    require_perm(actor, "products.manage_data_sources")
    clean_id = v.string(source_id, "source_id", max_length=63)
    if not SOURCE_ID_RE.match(clean_id):
        raise InvalidArgument("source_id must match [a-z][a-z0-9_]+", field="source_id")
    if clean_id == BUILTIN_SOURCE:
        raise InvalidArgument("source_id builtin is reserved for TraceMem's own database", field="source_id")
    clean_name = v.optional_string(name, "name") or clean_id
    source = DataSource.objects.select_for_update().filter(pk=clean_id).first()
    before = _source_audit(source) if source is not None else None
    if source is None:
        if dsn is None:
            raise InvalidArgument("dsn is required when creating a data source", field="dsn")
        source = DataSource(source_id=clean_id, kind=SourceKind.POSTGRESQL)
    source.name = clean_name
    replaced = False
    if dsn is not None:
        source.dsn_display = clean_dsn(dsn)
        replaced = dsn != _stored_dsn(source)
        if replaced:
            source.dsn_encrypted = crypto.encrypt(dsn)
    after = _source_audit(source)
    if replaced:
        # The DSN itself is never logged; that it was replaced is.
        after["write_only_changed"] = ["dsn"]
    source.save()
    audit_record(
        actor=actor,
        action="data_source.create" if before is None else "data_source.update",
        object_type="data_source",
        object_id=source.source_id,
        before=before,
        after=after,
    )
    return source


@transaction.atomic
def data_source_delete(*, actor: Actor, source_id: str) -> None:
    """Delete a data source no product uses (``invalid_state`` otherwise)."""
    require_perm(actor, "products.manage_data_sources")
    source = DataSource.objects.select_for_update().filter(pk=source_id).first()
    if source is None:
        raise NotFound(f"data source {source_id[:64]!r} was not found")
    if source.products.exists():
        raise InvalidState(f"data source {source_id} is used by data products; it cannot be deleted")
    before = _source_audit(source)
    source.delete()
    audit_record(
        actor=actor,
        action="data_source.delete",
        object_type="data_source",
        object_id=source_id,
        before=before,
    )


@transaction.atomic
def data_source_create(*, actor: Actor, source_id: Any, name: Any = None, dsn: Any) -> DataSource:
    """Create an external PostgreSQL source; ``conflict`` if the id is taken."""
    require_perm(actor, "products.manage_data_sources")
    if isinstance(source_id, str) and DataSource.objects.filter(pk=source_id).exists():
        raise Conflict(f"data source {source_id} already exists")
    return data_source_save(actor=actor, source_id=source_id, name=name, dsn=v.required(dsn, "dsn"))

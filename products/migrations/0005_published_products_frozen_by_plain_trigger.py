"""Published data products are frozen by a plain trigger no session can skip.

The pgtrigger triggers of 0002 asked ``pgtrigger.ignore`` first, so any session (the app role's
included) could ``SET pgtrigger.ignore`` and point a published product at another table under the
hash agents and read/write events rely on. The new trigger consults no setting, is ENABLE ALWAYS
and pins its search path, like the trace's (docs/security.md). ``created_at`` is frozen too now.
"""

import pgtrigger.migrations
from django.db import migrations

from tracemem_core.migration_ops import FrozenRows

COLUMNS = (
    "product_id",
    "name",
    "description",
    "version",
    "hash",
    "operation",
    "source_id",
    "source_table",
    "fields",
    "key_fields",
    "allowed_purposes",
    "max_rows",
    "result_modes",
    "policies",
    "requires_approval",
    "example_queries",
    "published_at",
    "created_at",
)


class Migration(migrations.Migration):
    dependencies = [("products", "0004_idempotency_keys_as_keyed_digests")]

    operations = [
        pgtrigger.migrations.RemoveTrigger(model_name="dataproduct", name="frozen_product_content"),
        pgtrigger.migrations.RemoveTrigger(model_name="dataproduct", name="frozen_product_delete"),
        FrozenRows(
            "products_dataproduct",
            "tracemem_product_frozen",
            frozen="OLD.status = 'published'",
            columns=COLUMNS,
            refused_change="NEW.status <> 'published'",
            update_message="data product % is published and frozen: publish the next version",
            delete_message="data product % is published and frozen: it cannot be deleted",
            names=("product_id",),
        ),
    ]

"""Published and retired policy versions are frozen by a plain trigger no session can skip.

The pgtrigger triggers of 0001 asked ``pgtrigger.ignore`` first, so any session (the app role's
included) could ``SET pgtrigger.ignore`` and rewrite a published version's rules under the hash
agents and evaluate events rely on. The new trigger consults no setting, is ENABLE ALWAYS and pins
its search path, like the trace's (docs/security.md). ``published_by`` and ``created_at`` are
frozen too now.
"""

import pgtrigger.migrations
from django.db import migrations

from tracemem_core.migration_ops import FrozenRows

COLUMNS = (
    "policy_id",
    "version",
    "name",
    "description",
    "inputs_schema",
    "rules",
    "default_outcome",
    "exception_route_id",
    "hash",
    "published_at",
    "published_by",
    "created_at",
)


class Migration(migrations.Migration):
    dependencies = [("policies", "0002_admin_permissions")]

    operations = [
        pgtrigger.migrations.RemoveTrigger(model_name="policyversion", name="frozen_version_content"),
        pgtrigger.migrations.RemoveTrigger(model_name="policyversion", name="frozen_version_delete"),
        FrozenRows(
            "policies_policyversion",
            "tracemem_policy_version_frozen",
            frozen="OLD.status <> 'draft'",
            columns=COLUMNS,
            # published → retired is the one move left; never back to published or to draft.
            refused_change="(OLD.status = 'retired' AND NEW.status <> 'retired') OR NEW.status = 'draft'",
            update_message="policy version %.% is frozen: published versions cannot change",
            delete_message="policy version %.% is frozen: it cannot be deleted",
            names=("policy_id", "version"),
        ),
    ]

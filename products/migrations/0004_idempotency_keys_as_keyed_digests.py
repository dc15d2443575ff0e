"""Store a keyed digest of each idempotency key instead of the key itself (issue 13).

Existing rows are converted in place, so a retry of a write made before the upgrade still returns
its first result. The digest is ``tracemem_core.crypto.keyed_digest`` (HMAC-SHA256 keyed from
DJANGO_SECRET_KEY, versioned by its salt), as ``products.services.writes.idempotency_digest`` computes it.
Going back keeps the digests: a key sent again after a downgrade would not be recognised, which can
only repeat a retried write.
"""

from django.db import migrations, models

from tracemem_core.crypto import keyed_digest


def digest_existing_keys(apps, schema_editor):
    WriteResult = apps.get_model("products", "WriteResult")
    for row in WriteResult.objects.only("pk", "idempotency_digest").iterator():
        WriteResult.objects.filter(pk=row.pk).update(idempotency_digest=keyed_digest(row.idempotency_digest))


class Migration(migrations.Migration):
    dependencies = [
        ("products", "0003_admin_permissions"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="writeresult", name="write_idempotency_unique"),
        migrations.RenameField(model_name="writeresult", old_name="idempotency_key", new_name="idempotency_digest"),
        migrations.RunPython(digest_existing_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="writeresult", name="idempotency_digest", field=models.CharField(max_length=64)
        ),
        migrations.AddConstraint(
            model_name="writeresult",
            constraint=models.UniqueConstraint(
                fields=("decision", "idempotency_digest"), name="write_idempotency_unique"
            ),
        ),
    ]

"""Autovacuum (and, for counter rows, fillfactor) fitted to this app's hot tables on PostgreSQL.

Storage parameters only: no index or table change. The values and their reasoning live in
kplc_sts/pgtuning.py and docs/postgres.md; SQLite is left alone.
"""

from django.db import migrations

from kplc_sts.pgtuning import storage_apply, storage_reset

TABLES = ["partners_partnerdailytotal"]


def forward(apps, schema_editor):
    storage_apply(schema_editor, TABLES)


def backward(apps, schema_editor):
    storage_reset(schema_editor, TABLES)


class Migration(migrations.Migration):
    dependencies = [("partners", "0002_clock_timestamps")]

    operations = [migrations.RunPython(forward, backward)]

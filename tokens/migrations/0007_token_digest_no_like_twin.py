# Issue 16's index diet: the digest column had two identical btree indexes on PostgreSQL, the
# plain one and its varchar_pattern_ops `_like` twin (911 MB each at one week of history). Only
# `digest = %s` ever runs, so the twin goes. The plain index is kept and renamed, not rebuilt:
# on a full-size table a rebuild would hold writes for minutes.

from django.db import migrations, models

TABLE = "care_tokendigest"
NEW = "token_digest_digest_idx"


def _forwards(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s",
                [TABLE],
            )
            for name, definition in cursor.fetchall():
                if definition.endswith("(digest varchar_pattern_ops)"):
                    schema_editor.execute(f'DROP INDEX "{name}"')
                elif definition.endswith("(digest)") and name != NEW:
                    schema_editor.execute(f'ALTER INDEX "{name}" RENAME TO "{NEW}"')
            return
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    for name, info in constraints.items():
        if info["index"] and not info["unique"] and info["columns"] == ["digest"] and name != NEW:
            schema_editor.execute(schema_editor.sql_delete_index % {"table": TABLE, "name": name})
    schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{NEW}" ON "{TABLE}" ("digest")')


def _backwards(apps, schema_editor):
    # Back to the Django-made pair under the names 0004's state expects.
    plain = schema_editor._create_index_name(TABLE, ["digest"], suffix="")
    schema_editor.execute(f'DROP INDEX IF EXISTS "{NEW}"')
    schema_editor.execute(f'CREATE INDEX "{plain}" ON "{TABLE}" ("digest")')
    if schema_editor.connection.vendor == "postgresql":
        like = schema_editor._create_index_name(TABLE, ["digest"], suffix="_like")
        schema_editor.execute(f'CREATE INDEX "{like}" ON "{TABLE}" ("digest" varchar_pattern_ops)')


class Migration(migrations.Migration):

    dependencies = [
        ('meters', '0002_clock_timestamps'),
        ('tokens', '0006_hot_table_storage'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='tokendigest',
                    name='digest',
                    field=models.CharField(max_length=64),
                ),
                migrations.AddIndex(
                    model_name='tokendigest',
                    index=models.Index(fields=['digest'], name='token_digest_digest_idx'),
                ),
            ],
            database_operations=[migrations.RunPython(_forwards, _backwards)],
        ),
    ]

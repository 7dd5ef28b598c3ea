# The enrollment index diet (docs/indexes.md, campaigns_enrollment): enrollment_meter_idx duplicated
# the meter FK's own index, and the batch and campaign FK indexes each lead a wider index that
# serves the same lookups. Django's AlterField(db_index=False) would drop and re-add both foreign
# keys, validating each with a full scan while the DROP INDEX holds ACCESS EXCLUSIVE on the table:
# on 7.4 million enrollments that stops every vend for the length of the migration. So the state
# changes as Django's operations say, and on PostgreSQL the database only loses the three indexes,
# each with DROP INDEX CONCURRENTLY (no lock that blocks reads or writes; outside a transaction,
# hence atomic = False). The foreign keys themselves are untouched.

import django.db.models.deletion
from django.db import migrations, models

TABLE = "campaigns_enrollment"
MERGED = "enrollment_meter_idx"
FK_COLUMNS = ("batch_id", "campaign_id")


def _fk_index_name(schema_editor, column):
    # The name Django gave the FK's index (its _create_index_name is how 0001 made it).
    return schema_editor._create_index_name(TABLE, [column], suffix="")


def _forwards(apps, schema_editor):
    names = [MERGED, *(_fk_index_name(schema_editor, column) for column in FK_COLUMNS)]
    if schema_editor.connection.vendor == "postgresql":
        # Wait a moment for a lock, never queue the vends behind this; rerun the migration if it gives up.
        schema_editor.execute("SET lock_timeout = '5s'")
        for name in names:
            schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        schema_editor.execute("RESET lock_timeout")
        return
    for name in names:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


def _backwards(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f'CREATE INDEX {concurrently}IF NOT EXISTS "{MERGED}" ON "{TABLE}" ("meter_id")')
    for column in FK_COLUMNS:
        name = _fk_index_name(schema_editor, column)
        schema_editor.execute(f'CREATE INDEX {concurrently}IF NOT EXISTS "{name}" ON "{TABLE}" ("{column}")')


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('campaigns', '0008_endgame'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(
                    model_name='enrollment',
                    name='enrollment_meter_idx',
                ),
                migrations.AlterField(
                    model_name='enrollment',
                    name='batch',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='enrollments', to='campaigns.batch'),
                ),
                migrations.AlterField(
                    model_name='enrollment',
                    name='campaign',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='enrollments', to='campaigns.campaign'),
                ),
            ],
            database_operations=[migrations.RunPython(_forwards, _backwards)],
        ),
    ]

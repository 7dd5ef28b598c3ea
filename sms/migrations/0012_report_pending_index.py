# Delivery reports: the sweeps look only at unapplied reports of the last SMS_REPORT_MATCH_SECONDS,
# so their partial index is keyed by received_at (it was keyed by id: the oldest unmatched reports
# came first on every pass, and enough of them filled it). And reports go with the SMS log's
# retention (sms.services.delivery_reports_prune): on PostgreSQL a BRIN index on received_at finds
# the old ones in a table of hundreds of millions for a few pages (the column grows with the id),
# where a btree over every report would cost each insert a leaf. BRIN is PostgreSQL's, so it is
# made here and not in the model's Meta (the SQLite demo's prune scans; it is small).
# Built and dropped CONCURRENTLY (no lock that stops reports being stored): outside a transaction.

from django.db import migrations, models

TABLE = "sms_deliveryreport"
OLD, NEW, BRIN = "sms_report_unapplied_idx", "sms_report_pending_idx", "sms_report_received_brin"


def _forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{NEW}" ON "{TABLE}" ("received_at") WHERE "applied_at" IS NULL'
        )
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{OLD}"')
        schema_editor.execute(
            f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{BRIN}" ON "{TABLE}" USING brin ("received_at")'
        )
        return
    schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{NEW}" ON "{TABLE}" ("received_at") WHERE "applied_at" IS NULL')
    schema_editor.execute(f'DROP INDEX IF EXISTS "{OLD}"')


def _backwards(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f'DROP INDEX {concurrently}IF EXISTS "{BRIN}"')
    schema_editor.execute(f'CREATE INDEX {concurrently}IF NOT EXISTS "{OLD}" ON "{TABLE}" ("id") WHERE "applied_at" IS NULL')
    schema_editor.execute(f'DROP INDEX {concurrently}IF EXISTS "{NEW}"')


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('sms', '0011_message_tally_shards'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(
                    model_name='deliveryreport',
                    name='sms_report_unapplied_idx',
                ),
                migrations.AddIndex(
                    model_name='deliveryreport',
                    index=models.Index(condition=models.Q(('applied_at__isnull', True)), fields=['received_at'], name='sms_report_pending_idx'),
                ),
            ],
            database_operations=[migrations.RunPython(_forwards, _backwards)],
        ),
    ]

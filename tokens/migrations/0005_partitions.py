# Issue 16: the vend history tables partitioned by month on PostgreSQL (docs/partitioning.md).
#
# On every database: the partner's reference moves to its own table (VendReference, backfilled from
# the vends), token digests get the created_at they are partitioned by (backfilled from the token or
# key change set they find), the vend's inbound foreign keys lose their database constraint, and the
# archive gets its ledger (ArchiveRecord). On PostgreSQL only: tokens_vend, tokens_issuedtoken and
# care_tokendigest are converted to partitioned tables with their rows (create, move, swap).

import re

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.migrations.exceptions import IrreversibleError

import kplc_sts.clock
from tokens import partitioning
from tokens.partitioning import HistoryTable

# Unique indexes that cannot hold on a partitioned table (they lack the partition key) but serve a
# query: recreated as plain indexes. Every other such unique index is enforced elsewhere (see
# docs/partitioning.md) and not recreated.
_UNIQUE_KEPT_AS_INDEX = {
    "tokens_issuedtoken": {("vend_id",)},  # vend.credit_token
}


def _convert(cursor, table: HistoryTable, now) -> None:
    name, key = table.table, table.key
    if partitioning.is_partitioned(cursor, table):
        return
    old = f"{name}_unpartitioned"
    cursor.execute(f"ALTER TABLE {name} RENAME TO {old}")
    # A foreign key to a partitioned table must name its whole primary key (id, created_at): the
    # AlterFields above dropped the ones Django knew of; anything else would be a surprise.
    cursor.execute(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE confrelid = %s::regclass AND contype = 'f'",
        [old],
    )
    inbound = cursor.fetchall()
    if inbound:
        raise RuntimeError(f"foreign keys still point at {name}: {inbound}")
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
        [old],
    )
    foreign_keys = cursor.fetchall()
    cursor.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisunique, "
        "ARRAY(SELECT a.attname FROM unnest(i.indkey) k JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = k) "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary",
        [old],
    )
    indexes = cursor.fetchall()
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [old])
    old_sequence = cursor.fetchone()[0]
    cursor.execute(f"ALTER SEQUENCE {old_sequence} RENAME TO {name}_id_seq_unpartitioned")

    cursor.execute(
        f"CREATE TABLE {name} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE ({key})"
    )
    cursor.execute(f"CREATE SEQUENCE {name}_id_seq OWNED BY {name}.id")
    cursor.execute(
        f"SELECT setval('{name}_id_seq', GREATEST((SELECT last_value FROM {name}_id_seq_unpartitioned), "  # noqa: S608
        f"(SELECT COALESCE(max(id), 0) FROM {old}), 1))"
    )
    cursor.execute(f"ALTER TABLE {name} ALTER COLUMN id SET DEFAULT nextval('{name}_id_seq')")
    partitioning.default_create(cursor, table)
    cursor.execute(f"SELECT min({key}) FROM {old}")  # noqa: S608
    first = cursor.fetchone()[0] or now
    ahead = partitioning.month_add(partitioning.month_start(now), settings.HISTORY_PARTITIONS_AHEAD_MONTHS)
    for month in partitioning.months_between(min(first, now), ahead):
        partitioning.partition_create(cursor, table, month)

    cursor.execute(f"INSERT INTO {name} SELECT * FROM {old}")  # noqa: S608
    moved = cursor.rowcount
    cursor.execute(f"SELECT count(*) FROM {old}")  # noqa: S608
    if cursor.fetchone()[0] != moved:
        raise RuntimeError(f"{name}: rows moved differ from rows held")
    cursor.execute(f"DROP TABLE {old}")  # its identity sequence goes with it

    # Indexes after the rows: one sorted build per partition instead of a random insert per row.
    cursor.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_pkey PRIMARY KEY (id, {key})")
    kept = _UNIQUE_KEPT_AS_INDEX.get(name, set())
    for _, definition, unique, columns in indexes:
        if unique:
            if tuple(columns) not in kept:
                continue
            definition = definition.replace("CREATE UNIQUE INDEX", "CREATE INDEX", 1)
        cursor.execute(re.sub(rf" ON (ONLY )?(public\.)?{old} ", f" ON {name} ", definition))
    for constraint, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {name} ADD CONSTRAINT {constraint} {definition}")


def partition_history(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # the SQLite demo keeps plain tables
    now = kplc_sts.clock.now()
    with schema_editor.connection.cursor() as cursor:
        # The backfills above left deferred foreign-key checks pending: run them now, or ALTER TABLE
        # refuses ("pending trigger events").
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for table in partitioning.HISTORY_TABLES:
            _convert(cursor, table, now)
        # A TID is never reused on a meter: every token takes its TID from the meter-and-key counter in
        # the statement that writes the counter (tokens._pg), and the counter only goes up. On SQLite
        # the unique (meter, sgc, krn, tid) still holds; on a partitioned table it cannot.
        cursor.execute(
            "CREATE OR REPLACE FUNCTION tokens_tid_counter_increases() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'TID counter % may only increase (% -> %)', OLD.id, OLD.last_tid, NEW.last_tid "
            "USING ERRCODE = 'integrity_constraint_violation'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER tokens_tid_counter_increases BEFORE UPDATE ON tokens_tidcounter FOR EACH ROW "
            "WHEN (OLD.last_tid IS NOT NULL AND (NEW.last_tid IS NULL OR NEW.last_tid <= OLD.last_tid)) "
            "EXECUTE FUNCTION tokens_tid_counter_increases()"
        )
        # The archive deletes a month of references by created_at: a BRIN index (a few pages, rows
        # arrive in time order) instead of a B-tree on every vend's write path.
        cursor.execute(
            "CREATE INDEX vend_reference_created_brin ON tokens_vendreference USING brin (created_at)"
        )


def unpartition_refused(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        raise IrreversibleError("0005_partitions: the history tables stay partitioned (restore a backup to go back)")


class Migration(migrations.Migration):
    dependencies = [
        ("partners", "0002_clock_timestamps"),
        ("tokens", "0004_clock_defaults"),
    ]

    operations = [
        migrations.CreateModel(
            name="ArchiveRecord",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("table", models.CharField(help_text="The partitioned table (tokens_vend, ...)", max_length=63)),
                ("partition", models.CharField(max_length=63, unique=True)),
                ("range_start", models.DateTimeField()),
                ("range_end", models.DateTimeField()),
                ("rows", models.BigIntegerField()),
                ("sha256", models.CharField(max_length=64)),
                ("path", models.CharField(max_length=500)),
                ("size_bytes", models.BigIntegerField()),
                ("archived_at", models.DateTimeField(default=kplc_sts.clock.now)),
                ("dropped_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={"ordering": ["-range_start", "table"]},
        ),
        migrations.CreateModel(
            name="VendReference",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "partner_id", "reference", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "partner",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="partners.partner",
                    ),
                ),
                ("reference", models.CharField(max_length=64)),
                ("vend_id", models.BigIntegerField()),
                ("created_at", models.DateTimeField(help_text="The vend's created_at (its partition)")),
            ],
        ),
        migrations.RunSQL(
            "INSERT INTO tokens_vendreference (partner_id, reference, vend_id, created_at) "
            "SELECT partner_id, reference, id, created_at FROM tokens_vend",
            migrations.RunSQL.noop,
        ),
        migrations.RemoveConstraint(model_name="vend", name="vend_partner_reference"),
        migrations.AddField(
            model_name="tokendigest",
            name="created_at",
            field=models.DateTimeField(default=kplc_sts.clock.now),
        ),
        migrations.RunSQL(
            "UPDATE care_tokendigest SET created_at = COALESCE("
            "(SELECT t.issued_at FROM tokens_issuedtoken t WHERE t.id = care_tokendigest.issued_token_id), "
            "(SELECT k.created_at FROM tokens_keychangeset k WHERE k.id = care_tokendigest.key_change_set_id), "
            "created_at)",
            migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="issuedtoken",
            name="vend",
            field=models.OneToOneField(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="credit_token",
                to="tokens.vend",
            ),
        ),
        migrations.AlterField(
            model_name="reversalrequest",
            name="vend",
            field=models.OneToOneField(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="reversal_request",
                to="tokens.vend",
            ),
        ),
        migrations.AlterField(
            model_name="vend",
            name="response_body",
            field=models.TextField(
                help_text="The JSON sent to the partner, replayed byte for byte; '' once compacted after the replay window"
            ),
        ),
        migrations.AlterField(
            model_name="vend",
            name="meter",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="vends", to="meters.meter"
            ),
        ),
        migrations.AlterField(
            model_name="issuedtoken",
            name="meter",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="issued_tokens",
                to="meters.meter",
            ),
        ),
        migrations.RunPython(partition_history, unpartition_refused, elidable=False),
    ]

# The token digest index and the vending-health aggregates move to tokens, their writer: state
# only, the tables (and their rows) stay where they are.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0002_vending"),
        ("care", "0001_initial"),
        ("dashboard", "0001_initial"),
        ("meters", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="TokenDigest",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("digest", models.CharField(db_index=True, max_length=64)),
                        ("issued_token_id", models.BigIntegerField(blank=True, null=True)),
                        ("key_change_set_id", models.BigIntegerField(blank=True, null=True)),
                        (
                            "position",
                            models.PositiveSmallIntegerField(
                                blank=True, help_text="Key change code number (1, 2...)", null=True
                            ),
                        ),
                        (
                            "meter",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="meters.meter"
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "token digest",
                        "db_table": "care_tokendigest",
                        "constraints": [
                            models.UniqueConstraint(fields=("issued_token_id",), name="token_digest_issued_token"),
                            models.UniqueConstraint(
                                fields=("key_change_set_id", "position"), name="token_digest_kcs_position"
                            ),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="VendMinuteStat",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("minute", models.DateTimeField(help_text="Start of the minute (UTC)")),
                        ("shard", models.PositiveSmallIntegerField(default=0)),
                        ("vends", models.PositiveIntegerField(default=0)),
                        (
                            "vends_with_codes",
                            models.PositiveIntegerField(default=0, help_text="Vends that carried the key change codes"),
                        ),
                    ],
                    options={
                        "db_table": "dashboard_vendminutestat",
                        "ordering": ["-minute", "shard"],
                        "constraints": [models.UniqueConstraint(fields=("minute", "shard"), name="vend_minute_stat_unique")],
                    },
                ),
                migrations.CreateModel(
                    name="ApiErrorStat",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("minute", models.DateTimeField(help_text="Start of the minute (UTC)")),
                        ("code", models.CharField(max_length=40)),
                        ("count", models.PositiveIntegerField(default=0)),
                    ],
                    options={
                        "db_table": "dashboard_apierrorstat",
                        "ordering": ["-minute", "code"],
                        "constraints": [models.UniqueConstraint(fields=("minute", "code"), name="api_error_stat_unique")],
                    },
                ),
            ],
        ),
    ]

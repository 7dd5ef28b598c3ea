# CampaignTarget moves to campaigns, its writer: state only, the table (and rows) stay.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0003_segments_recount"),
        ("dashboard", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="CampaignTarget",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("meters", models.PositiveIntegerField()),
                        ("computed_at", models.DateTimeField()),
                        (
                            "campaign",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="target_snapshot",
                                to="campaigns.campaign",
                            ),
                        ),
                    ],
                    options={"db_table": "dashboard_campaigntarget"},
                ),
            ],
        ),
    ]

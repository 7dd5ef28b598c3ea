# The outbox knows a campaign batch by id only (it sits below campaigns): the foreign key becomes a
# plain integer column with the same name. Its constraint and single-column index go (the
# (batch_id, status) index serves every lookup); the column and its values stay.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sms", "0003_message_sent_counted_and_more"),
        ("campaigns", "0003_segments_recount"),
    ]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="batch",
            field=models.ForeignKey(
                blank=True,
                null=True,
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="messages",
                to="campaigns.batch",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.RemoveConstraint(model_name="message", name="sms_message_one_notice_per_batch_meter"),
                migrations.RemoveIndex(model_name="message", name="sms_message_batch_status_idx"),
                migrations.RemoveField(model_name="message", name="batch"),
                migrations.AddField(
                    model_name="message",
                    name="batch_id",
                    field=models.BigIntegerField(blank=True, null=True),
                ),
                migrations.AddIndex(
                    model_name="message",
                    index=models.Index(fields=["batch_id", "status"], name="sms_message_batch_status_idx"),
                ),
                migrations.AddConstraint(
                    model_name="message",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("purpose", "notice")),
                        fields=("batch_id", "meter"),
                        name="sms_message_one_notice_per_batch_meter",
                    ),
                ),
            ],
        ),
    ]

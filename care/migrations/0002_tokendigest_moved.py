# TokenDigest now belongs to tokens (tokens/migrations/0003): state only, the table stays.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("care", "0001_initial"),
        ("tokens", "0003_moved_models"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name="TokenDigest")],
        ),
    ]

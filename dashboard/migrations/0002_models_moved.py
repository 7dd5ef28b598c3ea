# The dashboard owns no tables any more: they moved, with their rows, to their writers
# (campaigns 0004: CampaignTarget; tokens 0003: VendMinuteStat, ApiErrorStat). State only.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0001_initial"),
        ("campaigns", "0004_campaigntarget_moved"),
        ("tokens", "0003_moved_models"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name="ApiErrorStat"),
                migrations.DeleteModel(name="CampaignTarget"),
                migrations.DeleteModel(name="VendMinuteStat"),
            ],
        ),
    ]

"""Count the segments of a register loaded before the aggregates existed (seconds at 7.4 M meters)."""

from django.db import migrations


def recount(apps, schema_editor):
    Meter = apps.get_model("meters", "Meter")
    if not Meter.objects.exists():
        return  # an empty register: the first import counts
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_metersegment (region, sgc, krn, status, meters) "
            "SELECT region, sgc, krn, status, COUNT(*) FROM meters_meter GROUP BY region, sgc, krn, status"
        )
        cursor.execute(
            "INSERT INTO campaigns_campaignsegment (campaign_id, region, sgc, enrolled_active) "
            "SELECT e.campaign_id, m.region, m.sgc, COUNT(*) FROM campaigns_enrollment e "
            "JOIN meters_meter m ON m.id = e.meter_id JOIN campaigns_campaign c ON c.id = e.campaign_id "
            "WHERE m.krn = c.from_krn AND m.status = 'active' GROUP BY e.campaign_id, m.region, m.sgc"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0002_segments"),
        ("meters", "0001_initial"),
    ]

    operations = [migrations.RunPython(recount, migrations.RunPython.noop)]

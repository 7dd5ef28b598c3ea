import kplc_sts.fields
from django.db import migrations


def triggers_install(apps, schema_editor):
    # SQLite rebuilds the table for this AlterField and drops its triggers with the old one.
    from audit.immutability import install

    install(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_append_only"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="at",
            field=kplc_sts.fields.ClockDateTimeField(auto_now_add=True, db_index=True),
        ),
        migrations.RunPython(triggers_install, migrations.RunPython.noop, elidable=False),
    ]

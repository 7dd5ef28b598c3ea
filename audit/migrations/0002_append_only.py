"""Make audit_auditevent append-only in the database (see audit.immutability).

A later migration that rebuilds this table on SQLite (an ALTER that SQLite cannot do in place) drops
its triggers with the old table: such a migration must call audit.immutability.install again.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    from audit.immutability import install

    install(schema_editor)


def backwards(apps, schema_editor):
    from audit.immutability import remove

    remove(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.AlterModelOptions(
            name="auditevent", options={"base_manager_name": "objects", "ordering": ["-at", "-id"]}
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]

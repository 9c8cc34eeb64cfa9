from django.db import migrations, models


def first_stamp(apps, schema_editor):
    apps.get_model("imaging", "AuthGeneration").objects.create(id=1, stamp=0)


class Migration(migrations.Migration):

    dependencies = [
        ("imaging", "0014_auth_tokens_roles"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuthGeneration",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("stamp", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(first_stamp, migrations.RunPython.noop),
    ]

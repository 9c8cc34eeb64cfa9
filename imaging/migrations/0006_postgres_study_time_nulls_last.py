"""On PostgreSQL, DICOMStudyDateAndTime DESC with missing values last needs an index declared NULLS LAST (SQLite
sorts NULL last when descending already, and its CREATE INDEX has no NULLS clause)."""
from django.db import migrations

INDEX = "imageset_studytime_desc_nulls_last"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON imaging_imageset (datastore_id, study_date_time DESC NULLS LAST, id)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("imaging", "0005_viewer_indexes")]
    operations = [migrations.RunPython(create, drop)]

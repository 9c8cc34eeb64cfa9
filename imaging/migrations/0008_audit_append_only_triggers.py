"""Database triggers that make imaging_auditevent append-only: no UPDATE on SQLite and PostgreSQL, no row DELETE
on PostgreSQL. SQLite keeps DELETE possible because its table flush (tests, the retention command) is a DELETE;
the model refuses deletes there as everywhere."""
from django.db import migrations

SQLITE = [
    "CREATE TRIGGER IF NOT EXISTS auditevent_no_update BEFORE UPDATE ON imaging_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END",
]
POSTGRES = [
    "CREATE OR REPLACE FUNCTION auditevent_append_only() RETURNS trigger AS $$ BEGIN "
    "RAISE EXCEPTION 'audit events are append-only'; END; $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS auditevent_append_only ON imaging_auditevent",
    "CREATE TRIGGER auditevent_append_only BEFORE UPDATE OR DELETE ON imaging_auditevent "
    "FOR EACH ROW EXECUTE FUNCTION auditevent_append_only()",
]


def create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in SQLITE if vendor == "sqlite" else POSTGRES if vendor == "postgresql" else []:
        schema_editor.execute(statement)


def drop(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS auditevent_no_update")
    elif vendor == "postgresql":
        schema_editor.execute("DROP TRIGGER IF EXISTS auditevent_append_only ON imaging_auditevent")


class Migration(migrations.Migration):
    dependencies = [("imaging", "0007_audit_share_throttle")]
    operations = [migrations.RunPython(create, drop)]

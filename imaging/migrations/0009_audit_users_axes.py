"""Users can be deleted without touching the audit trail, the trail is append-only on SQLite as on PostgreSQL, and
login throttling moves to django-axes.

- AuditEvent.user becomes a reference without a database constraint that Django does not follow on delete: the
  row keeps the username and principal as text, and deleting a user no longer tries to rewrite its events (a
  SET_NULL is an UPDATE, which the triggers refuse: that was a 500).
- A DELETE of audit rows is refused on both engines unless the row is older than the cut-off of an open prune
  window: a row in imaging_auditprunewindow that only `manage.py audit_prune` writes, and removes again, inside its
  own transaction (imaging/services/audit_retention.py). No other session ever sees a window.
- On SQLite, changing the column rebuilds the table, which drops its triggers: they are created again here, after
  the rebuild (any later migration that alters imaging_auditevent must do the same).
- LoginFailure, the hand-written throttle's table, is dropped: django-axes keeps its own.
"""
from django.conf import settings
from django.db import migrations, models
import django.db.models.deletion

WINDOW = "imaging_auditprunewindow"
REFUSAL = "audit events are append-only (old ones are removed only by manage.py audit_prune)"

SQLITE_CREATE = [
    f"CREATE TABLE IF NOT EXISTS {WINDOW} (prune_before datetime NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS auditevent_no_update BEFORE UPDATE ON imaging_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS auditevent_no_delete BEFORE DELETE ON imaging_auditevent "
    f"WHEN NOT EXISTS (SELECT 1 FROM {WINDOW} WHERE OLD.event_time < {WINDOW}.prune_before) "
    f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END",
]
SQLITE_DROP = ["DROP TRIGGER IF EXISTS auditevent_no_delete", f"DROP TABLE IF EXISTS {WINDOW}"]
POSTGRES_CREATE = [
    f"CREATE TABLE IF NOT EXISTS {WINDOW} (prune_before timestamp with time zone NOT NULL)",
    "CREATE OR REPLACE FUNCTION auditevent_append_only() RETURNS trigger AS $$ BEGIN "
    f"IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM {WINDOW} w WHERE OLD.event_time < w.prune_before) "
    "THEN RETURN OLD; END IF; "
    f"RAISE EXCEPTION '{REFUSAL}'; END; $$ LANGUAGE plpgsql",
]
POSTGRES_DROP = [
    "CREATE OR REPLACE FUNCTION auditevent_append_only() RETURNS trigger AS $$ BEGIN "
    "RAISE EXCEPTION 'audit events are append-only'; END; $$ LANGUAGE plpgsql",
    f"DROP TABLE IF EXISTS {WINDOW}",
]


def _run(schema_editor, statements_by_vendor: dict[str, list[str]]) -> None:
    for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement)


def create(apps, schema_editor):
    _run(schema_editor, {"sqlite": SQLITE_CREATE, "postgresql": POSTGRES_CREATE})


def drop(apps, schema_editor):
    _run(schema_editor, {"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP})


def restore_sqlite_update_trigger(apps, schema_editor):
    """Backwards only: the column change rebuilt the table again, so 0008's trigger is created again."""
    _run(schema_editor, {"sqlite": SQLITE_CREATE[1:2]})


class Migration(migrations.Migration):
    dependencies = [("imaging", "0008_audit_append_only_triggers")]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, restore_sqlite_update_trigger),
        migrations.AlterField(
            model_name="auditevent",
            name="user",
            field=models.ForeignKey(
                blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+", to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.DeleteModel(name="LoginFailure"),
        migrations.RunPython(create, drop),
    ]

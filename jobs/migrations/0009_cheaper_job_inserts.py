"""Cheaper job inserts: fewer B-trees written per job.

- SQLite's search trigger (migration 0004) no longer copies a job's object id into
  jobs_jobvalue, nor an argument equal to it (an order's jobs carry the order id both
  ways): the search finds those through the job table's own object_id index
  (jobs/search.py). A mixed-case object id, which that index cannot match case aside,
  is still copied. A job whose only argument is its object id (every order job) skips
  the trigger's body altogether. Values copied before stay: the search still finds them.
- The (object_type, object_id) index goes: object_id alone is as selective.
- The index of dead letters by fingerprint holds dead rows only: inserting a job and its
  status changes before it dies no longer write it.

On SQLite, three order jobs cost 0.39x what they cost before in a bare insert loop
(docs/BENCHMARKS.md, "Cheaper job rows").
"""

from django.db import migrations, models

VALUES = """
    SELECT DISTINCT NEW.id, lower(v) FROM (
        SELECT value AS v, type AS t FROM json_each(CASE WHEN json_valid(NEW.args) THEN NEW.args ELSE '[]' END)
        UNION ALL
        SELECT value, type FROM json_each(CASE WHEN json_valid(NEW.kwargs) THEN NEW.kwargs ELSE '{}' END)
        UNION ALL
        SELECT NEW.object_id, 'text'
    ) WHERE t IN ('text', 'integer', 'real') AND length(v) BETWEEN 1 AND 200SKIP
"""
# The body inserts nothing for a job without keyword arguments whose positional ones are
# none or just its (lower-case) object id: then it is not run at all. (A JSON spelling
# other than SQLite's own only makes the body run and find nothing to add.)
SQLITE_TRIGGER = (
    "CREATE TRIGGER jobs_job_values_insert AFTER INSERT ON jobs_job "
    "WHEN NEW.kwargs <> '{}' OR NEW.object_id <> lower(NEW.object_id) "
    "OR NEW.args NOT IN ('[]', json_array(NEW.object_id)) BEGIN "
    "INSERT OR IGNORE INTO jobs_jobvalue (job_id, value) " + VALUES.replace("SKIP", " AND lower(v) <> NEW.object_id") + "; END"
)
SQLITE_TRIGGER_0004 = (
    "CREATE TRIGGER jobs_job_values_insert AFTER INSERT ON jobs_job BEGIN "
    "INSERT OR IGNORE INTO jobs_jobvalue (job_id, value) " + VALUES.replace("SKIP", "") + "; END"
)
DROP_TRIGGER = "DROP TRIGGER IF EXISTS jobs_job_values_insert"


def lighter_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(DROP_TRIGGER, params=None)
        schema_editor.execute(SQLITE_TRIGGER, params=None)


def trigger_of_0004(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(DROP_TRIGGER, params=None)
        schema_editor.execute(SQLITE_TRIGGER_0004, params=None)
        # The object ids the lighter trigger left out, as 0004 would have written them.
        schema_editor.execute(
            "INSERT OR IGNORE INTO jobs_jobvalue (job_id, value) SELECT id, lower(object_id) FROM jobs_job "
            "WHERE length(object_id) BETWEEN 1 AND 200",
            params=None,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0008_pause_queues"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="job", name="job_object_idx"),
        migrations.RemoveIndex(model_name="job", name="job_status_fingerprint_idx"),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("status", "dead")),
                fields=["status", "error_fingerprint", "finished_at", "queue_name"],
                name="job_dead_groups_idx",
            ),
        ),
        migrations.RunPython(lighter_trigger, trigger_of_0004, elidable=False),
    ]

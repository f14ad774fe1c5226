"""PostgreSQL: the job's search values in a GIN expression index instead of the
jobs_jobvalue side table kept by a statement trigger with a transition table (+0.5 ms on
every single-row job insert; the index costs a fraction of it). SQLite keeps its triggers
(+2%). Both: the status index carries the actor and the queue, so that a status filter
combined with either is paged and counted in the index."""

from django.db import migrations, models

# The values the search matches exactly: the top-level strings and numbers among the
# job's args and kwargs, and its object id, lower-cased, as a jsonb array. One expression
# of immutable built-ins: PostgreSQL inlines it, in the index and in the query alike.
# (Lower-casing the JSON text keeps it valid JSON: escapes and literals are lower-case or
# case-blind.) Nested values and booleans are left out, as in SQLite's triggers.
POSTGRES_VALUES_FUNCTION = """
CREATE FUNCTION jobs_job_search_values(args jsonb, kwargs jsonb, object_id text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN
    jsonb_path_query_array(lower(args::text)::jsonb,
                           'strict $[*] ? (@.type() == "string" || @.type() == "number")', '{}', true)
    || jsonb_path_query_array(lower(kwargs::text)::jsonb,
                              'strict $.* ? (@.type() == "string" || @.type() == "number")', '{}', true)
    || (jsonb_object(ARRAY['o', lower(object_id)]) -> 'o')
"""

POSTGRES_INSTALL = [
    POSTGRES_VALUES_FUNCTION,
    # fastupdate off: each insert updates the index itself (a few keys), rather than a
    # pending list that every search scans and some insert flushes.
    "CREATE INDEX job_search_values_idx ON jobs_job "
    "USING gin (jobs_job_search_values(args, kwargs, object_id) jsonb_path_ops) WITH (fastupdate = off)",
    "DROP TRIGGER IF EXISTS jobs_job_values_insert ON jobs_job",
    "DROP TRIGGER IF EXISTS jobs_job_values_delete ON jobs_job",
    "DROP FUNCTION IF EXISTS jobs_job_values_insert()",
    "DROP FUNCTION IF EXISTS jobs_job_values_delete()",
    "TRUNCATE jobs_jobvalue",
]
POSTGRES_UNINSTALL = [
    "DROP INDEX IF EXISTS job_search_values_idx",
    "DROP FUNCTION IF EXISTS jobs_job_search_values(jsonb, jsonb, text)",
]


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in POSTGRES_INSTALL:
            schema_editor.execute(sql, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        from importlib import import_module

        previous = import_module("jobs.migrations.0004_error_fingerprints_and_search")
        for sql in POSTGRES_UNINSTALL:
            schema_editor.execute(sql, params=None)
        for sql in previous.POSTGRES_INSTALL:
            if not sql.startswith("CREATE INDEX job_error_fts_idx"):  # still there
                schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0004_error_fingerprints_and_search"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                fields=["status", "-created_at", "actor_name", "queue_name"], name="job_status_list_idx"
            ),
        ),
        migrations.RemoveIndex(model_name="job", name="job_status_created_idx"),
        migrations.RunPython(install, uninstall),
    ]

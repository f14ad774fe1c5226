"""The job list's search box: find a job by what people know about it, each kind of term
through an index, so that a search costs the same at a thousand jobs and at a million.

The shape of the term decides what is searched (an OR of an exact match with a text scan
would make the database read every row):

- `error: words` (or any term with a space in it): jobs whose error contains all these
  words, through a full-text index of the errors (PostgreSQL: a GIN index on
  to_tsvector('simple', last_error) of the rows that have an error; SQLite: an FTS5 table
  over the job table, kept by triggers);
- a UUID: that job (its id), and the jobs that carry it as an argument or object id;
- anything else (an order id, an e-mail address, a SKU, a number): the jobs that carry
  exactly that value, case aside, as their object id or as one of their top-level
  arguments (positional or keyword; strings and numbers of 1-200 characters). The
  `jobs_jobvalue` table lists them; database triggers fill it when a job is written
  (migration 0004), so enqueueing a job issues no statement for it.
"""

from __future__ import annotations

import re
import uuid

from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from jobs.models import Job, JobValue

ERROR_PREFIX = "error:"
VALUE_LIMIT = 200  # longer values are not indexed (the triggers skip them)
HELP_TEXT = (
    "A job id, an order or object id, or any value among the job's arguments (an e-mail "
    "address, a SKU): exact, case aside. Words of an error: start with “error:” "
    "(e.g. error: relay gone); a search with a space in it looks in the errors too."
)


def search(queryset: QuerySet[Job], term: str) -> QuerySet[Job]:
    term = term.strip()
    if not term:
        return queryset
    if term.lower().startswith(ERROR_PREFIX):
        return _error_text(queryset, term[len(ERROR_PREFIX) :])
    if any(character.isspace() for character in term):
        return _error_text(queryset, term)
    return _exact(queryset, term)


def _exact(queryset: QuerySet[Job], term: str) -> QuerySet[Job]:
    if len(term) > VALUE_LIMIT:
        return queryset.none()
    carrying = JobValue.objects.filter(value=term.lower()).values("job_id")
    try:
        job_id = uuid.UUID(term)
    except ValueError:
        return queryset.filter(pk__in=carrying)
    # One IN over a UNION keeps both lookups on their indexes (an OR would not, on SQLite).
    return queryset.filter(pk__in=carrying.union(Job.objects.filter(pk=job_id).order_by().values("pk"), all=True))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _error_text(queryset: QuerySet[Job], text: str) -> QuerySet[Job]:
    words = _words(text)
    if not words:
        return queryset.none()
    if connection.vendor == "postgresql":
        # The expression and the condition are those of the partial index job_error_fts_idx.
        sql = (
            'to_tsvector(\'simple\'::regconfig, "jobs_job"."last_error") '
            "@@ plainto_tsquery('simple'::regconfig, %s) AND \"jobs_job\".\"last_error\" <> ''"
        )
        return queryset.filter(RawSQL(sql, [" ".join(words)], output_field=BooleanField()))  # noqa: S611 - bound
    if connection.vendor == "sqlite":
        phrases = " ".join(f'"{word}"' for word in words)  # \w+ words: no quote to escape
        sql = '"jobs_job".rowid IN (SELECT rowid FROM jobs_job_error_fts WHERE jobs_job_error_fts MATCH %s)'
        return queryset.filter(RawSQL(sql, [phrases], output_field=BooleanField()))  # noqa: S611 - bound
    for word in words:  # another database: no index, but the same meaning
        queryset = queryset.filter(last_error__icontains=word)
    return queryset

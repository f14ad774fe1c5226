"""The job list's search box: find a job by what people know about it, each kind of term
through an index, so that a search costs the same at a thousand jobs and at a million.

The shape of the term decides what is searched (an OR of an exact match with a text scan
would make the database read every row):

- `error: words` (or any term with a space in it): jobs whose error contains all these
  words, through a full-text index of the errors (PostgreSQL: a GIN index on
  to_tsvector('simple', last_error) of the rows that have an error; SQLite: an FTS5 table
  over the job table, kept by triggers);
- a UUID: that job (its id), and the jobs that carry it as an argument or object id;
- 8 hex digits (a job's id as the list shows it): the jobs whose id starts with them;
- an actor's name: that actor's jobs;
- anything else (an order id, an e-mail address, a SKU, a number): the jobs that carry
  exactly that value, case aside, as their object id or as one of their top-level
  arguments (positional or keyword; strings and numbers of 1-200 characters). SQLite:
  the `jobs_jobvalue` table lists them, filled by triggers when a job is written
  (migration 0004), except a lower-case object id and the arguments equal to it, which
  the job table's object_id index finds (migration 0009: an order's jobs then write no
  value row at all); PostgreSQL: a GIN index on an expression of the job's own columns
  (migration 0005, a fraction of the triggers' cost per insert). Either way enqueueing a
  job issues no statement for them.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL

from jobs.models import Job, JobValue

ERROR_PREFIX = "error:"
SHORT_ID = re.compile(r"[0-9a-fA-F]{8}")
VALUE_LIMIT = 200  # longer values are not indexed (the triggers skip them)
NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")  # JSON's number syntax
HELP_TEXT = (
    "A job id (whole or its first 8 characters), an actor's name, an order or object id, or "
    "any value among the job's arguments (an e-mail address, a SKU): exact, case aside. Words "
    "of an error: start with “error:” (e.g. error: relay gone); a search with a space in it "
    "looks in the errors too."
)


def search(queryset: QuerySet[Job], term: str) -> QuerySet[Job]:
    term = term.strip()
    if not term:
        return queryset
    if term.lower().startswith(ERROR_PREFIX):
        return _error_text(queryset, term[len(ERROR_PREFIX) :])
    if any(character.isspace() for character in term):
        return _error_text(queryset, term)
    if SHORT_ID.fullmatch(term):  # the 8 characters the pages show of a job's id
        return _short_id(queryset, term.lower())
    if term in _actor_names():
        return queryset.filter(actor_name=term)
    return _exact(queryset, term)


def leads(term: str) -> bool:
    """Whether a search for `term` finds its jobs through an index of its own (ids, values,
    error words) rather than a plain column (an actor's name): then that index should
    drive any further condition, such as the dead jobs among them."""
    term = term.strip()
    return bool(term) and term not in _actor_names()


def _actor_names() -> set[str]:
    import dramatiq

    return set(dramatiq.get_broker().actors)


def _short_id(queryset: QuerySet[Job], prefix: str) -> QuerySet[Job]:
    """The jobs whose id starts with these 8 hex digits: a range of the primary key (a
    few rows of a million share them, about one in four billion each), plus any job that
    carries exactly this value, as an exact search would find it."""
    low, high = uuid.UUID(prefix + "0" * 24), uuid.UUID(prefix + "f" * 24)
    if connection.vendor == "postgresql":
        # An OR of the range and the values' index: one bitmap of both (an IN over a
        # UNION was planned as a scan of the whole table, 12.6 s at a million jobs).
        return queryset.filter(Q(pk__gte=low, pk__lte=high) | _carrying_on_postgresql(prefix, None))
    by_id = queryset.filter(pk__gte=low, pk__lte=high)
    carrying = _exact(queryset, prefix)
    return queryset.filter(pk__in=by_id.order_by().values("pk").union(carrying.order_by().values("pk"), all=True))


def _exact(queryset: QuerySet[Job], term: str) -> QuerySet[Job]:
    if len(term) > VALUE_LIMIT:
        return queryset.none()
    try:
        job_id: uuid.UUID | None = uuid.UUID(term)
    except ValueError:
        job_id = None
    if connection.vendor == "postgresql":
        return queryset.filter(_carrying_on_postgresql(term, job_id))
    value = term.lower()
    # The values table leaves out what the object_id index finds: a lower-case object id,
    # and any argument equal to it (migration 0009). One IN over a UNION keeps every
    # lookup on its index (an OR would not, on SQLite).
    carrying = JobValue.objects.filter(value=value).values("job_id")
    lookups = [Job.objects.filter(object_id=value).order_by().values("pk")]
    if job_id is not None:
        lookups.append(Job.objects.filter(pk=job_id).order_by().values("pk"))
    return queryset.filter(pk__in=carrying.union(*lookups, all=True))


def _carrying_on_postgresql(term: str, job_id: uuid.UUID | None) -> Q:
    """Through the GIN index job_search_values_idx (migration 0005): the expression is the
    index's. A number is looked for as a string and as a JSON number; a UUID as the job's
    id too (PostgreSQL ORs the indexes in one bitmap)."""
    values: list[Any] = [term.lower()]
    if NUMBER.fullmatch(term):
        values.append(json.loads(term))
    condition = Q()
    for value in values:
        sql = 'jobs_job_search_values("jobs_job"."args", "jobs_job"."kwargs", "jobs_job"."object_id") @> %s::jsonb'
        condition |= Q(RawSQL(sql, [json.dumps([value])], output_field=BooleanField()))  # noqa: S611 - bound
    if job_id is not None:
        condition |= Q(pk=job_id)
    return condition


def counted_in_index(queryset: QuerySet[Job]) -> bool:
    """Whether `index_count` can count this queryset's jobs in the full-text index alone."""
    query = queryset.query
    return (
        getattr(query, "buzzer_error_phrases", None) is not None
        and connection.vendor == "sqlite"
        and len(query.where.children) == 1
    )


def index_count(queryset: QuerySet[Job], limit: int) -> int | None:
    """How many jobs an error-text search finds, up to `limit`, counted in the full-text
    index alone, when that search is the queryset's only condition (SQLite: the FTS5
    table follows the job table through triggers, so its matches are the jobs; counting
    them there spares a lookup of every matching job, 2.5 ms of a 1,434-job count at a
    million jobs). None when it cannot tell: count the usual way."""
    if not counted_in_index(queryset):
        return None
    phrases = queryset.query.buzzer_error_phrases  # type: ignore[attr-defined]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM jobs_job_error_fts WHERE jobs_job_error_fts MATCH %s LIMIT %s)",
            [phrases, limit],
        )
        return int(cursor.fetchone()[0])


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
        found = queryset.filter(RawSQL(sql, [phrases], output_field=BooleanField()))  # noqa: S611 - bound
        # Remembered on the query (its clones keep it) for `index_count`.
        found.query.buzzer_error_phrases = phrases  # type: ignore[attr-defined]
        return found
    for word in words:  # another database: no index, but the same meaning
        queryset = queryset.filter(last_error__icontains=word)
    return queryset

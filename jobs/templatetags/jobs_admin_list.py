"""`{% job_result_list cl %}`: Django's `{% result_list cl %}`, with the rows rendered by
jobs.admin_list.Rows (a fraction of the cost per row) whenever it knows every column."""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.templatetags import admin_list as django_admin_list
from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from django.template.loader import render_to_string

from jobs import admin_list
from jobs.models import Job

register = template.Library()


@register.simple_tag
def job_result_list(cl: Any) -> str:
    rows = admin_list.Rows(cl)
    if not rows.fast:  # list_editable, a popup, a column of a kind Rows does not render
        return render_to_string("admin/change_list_results.html", django_admin_list.result_list(cl))
    context = admin_list.result_list(cl, rows)
    # The rows' cells are updated in place this often (static/jobs/console.js).
    context["live_seconds"] = getattr(cl.model_admin, "live_seconds", None)
    return render_to_string("admin/jobs/change_list_results.html", context)


RETRY_MATCHING_CAP = 1000


def dead_among(queryset: QuerySet[Job], searched: bool) -> QuerySet[Job]:
    """The dead jobs of `queryset`. After a search through an index of its own, on SQLite, the status is compared as
    `+status` (SQLite's way to keep a term off an index), so that the search's index
    drives the query; PostgreSQL combines both indexes itself."""
    if searched and connection.vendor == "sqlite":
        sql = '+"jobs_job"."status" = %s'
        return queryset.filter(RawSQL(sql, [Job.Status.DEAD], output_field=BooleanField()))  # noqa: S611 - bound
    return queryset.filter(status=Job.Status.DEAD)


@register.simple_tag
def dead_matching(cl: Any) -> str:
    """How many dead jobs the list's filters and search match ("" for none, "1000+" past
    the cap): the "Retry all" button is offered only where it can act, with the count.
    Without a search: counted in the status index, at most RETRY_MATCHING_CAP + 1 entries.
    With a search through an index of its own (`jobs.search.leads`), that index leads and
    each job it finds is checked for being dead: SQLite would otherwise walk every dead
    job's index entry to test it against the search (21 ms instead of 0.3 ms at 10,000
    dead jobs)."""
    from jobs.admin import capped_count

    count = getattr(getattr(cl, "paginator", None), "dead_count", None)  # jobs.admin.JobPaginator
    if count is None:
        searched = getattr(cl.queryset.query, "buzzer_searched", False)  # JobAdmin.get_search_results
        count = capped_count(dead_among(cl.queryset, searched=searched), RETRY_MATCHING_CAP + 1)
    if not count:
        return ""
    return f"{RETRY_MATCHING_CAP:,}+" if count > RETRY_MATCHING_CAP else f"{count:,}"

"""`{% job_result_list cl %}`: Django's `{% result_list cl %}`, with the rows rendered by
jobs.admin_list.Rows (a fraction of the cost per row) whenever it knows every column."""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.templatetags import admin_list as django_admin_list
from django.template.loader import render_to_string

from jobs import admin_list

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


@register.simple_tag
def dead_matching(cl: Any) -> str:
    """How many dead jobs the list's filters and search match ("" for none, "1000+" past
    the cap): the "Retry all" button is offered only where it can act, with the count.
    Counted in the status index, at most RETRY_MATCHING_CAP + 1 entries."""
    from jobs.admin import capped_count
    from jobs.models import Job

    count = capped_count(cl.queryset.filter(status=Job.Status.DEAD), RETRY_MATCHING_CAP + 1)
    if not count:
        return ""
    return f"{RETRY_MATCHING_CAP:,}+" if count > RETRY_MATCHING_CAP else f"{count:,}"

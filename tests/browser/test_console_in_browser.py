"""The jobs console in a real browser: the job list fits a laptop screen, one line per
job, and the pages do not scroll sideways."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page

from jobs.models import Job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page: Page, live_server: Any, path: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next={path}")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill("pw-for-tests-only")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(re.escape(path.split("?")[0]) + r"(\?.*)?$"))


def test_the_job_list_shows_every_column_on_one_line_at_1366_px(live_server: Any, page: Page, operator: Any) -> None:
    now = timezone.now()
    Job.objects.bulk_create(
        Job(
            actor_name="send_confirmation_email" if n % 2 else "update_inventory",
            status="succeeded",
            attempts=1,
            object_type="orders.order",
            object_id=f"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1{n:02d}",
            created_at=now - timezone.timedelta(seconds=n),
            started_at=now - timezone.timedelta(seconds=n),
            finished_at=now - timezone.timedelta(seconds=n) + timezone.timedelta(milliseconds=8),
        )
        for n in range(30)
    )
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, live_server, "/admin/jobs/job/")

    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 30
    heights = [rows.nth(i).bounding_box()["height"] for i in range(30)]
    assert max(heights) <= 40, heights  # one line per job
    table = page.locator("#result_list").bounding_box()
    results = page.locator(".results").evaluate("el => [el.scrollWidth, el.clientWidth]")
    widths = page.evaluate(
        "() => [...document.querySelectorAll('#result_list thead th')]"
        ".map(th => th.className + ' ' + Math.round(th.getBoundingClientRect().width))"
    )
    assert results[0] <= results[1], (results, widths)  # no column hidden in a sideways scroller
    assert table["x"] + table["width"] <= 1366
    assert page.locator("#result_list").get_by_text("order 0f1e2d3c").first.is_visible()


def test_the_job_list_and_the_dashboard_update_in_place(live_server: Any, page: Page, operator: Any) -> None:
    job = Job.objects.create(actor_name="send_confirmation_email", status="enqueued", enqueued_at=timezone.now())
    log_in(page, live_server, "/admin/jobs/job/")
    page.locator(f'input.action-select[value="{job.pk}"]').check()  # a selection must survive

    Job.objects.filter(pk=job.pk).update(status="succeeded", started_at=timezone.now(), finished_at=timezone.now())
    Job.objects.create(actor_name="update_inventory", status="enqueued")
    badge = page.locator("#result_list tbody tr").first.locator(".field-status_badge")
    badge.get_by_text("succeeded").wait_for(timeout=15_000)  # no reload: the cell changed in place
    assert page.locator(f'input.action-select[value="{job.pk}"]').is_checked()
    page.get_by_text("1 newer job on this page: show").wait_for(timeout=15_000)

    page.goto(f"{live_server.url}/admin/jobs/dashboard/")
    marker = page.evaluate(
        "() => { window.buzzerMarker = 1; return document.querySelector('.buzzer-meta').textContent; }"
    )
    page.wait_for_function(
        "text => document.querySelector('.buzzer-meta').textContent !== text", arg=marker, timeout=25_000
    )
    assert page.evaluate("() => window.buzzerMarker") == 1  # the same page: updated, not reloaded

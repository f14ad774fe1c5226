"""An operator in a real browser: log into the admin, open the dead letters, click
Retry, and see the job succeed on a real worker."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from jobs.models import Job
from tests.support import email
from tests.support.data import QUICK_RETRIES, email_job
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_operator_retries_a_dead_job_from_the_dead_letters_page(
    live_server: Any, page: Page, worker_factory: Callable[..., Any], products: dict, operator: Any
) -> None:
    worker_factory(processes=1, threads=2)
    email.fail_next(1_000)
    job = email_job(products, QUICK_RETRIES)
    wait_until(lambda: Job.objects.get(pk=job.pk).status == "dead", timeout=30, what="the job to die")
    email.fail_next(0)  # the mail server is back

    page.goto(f"{live_server.url}/admin/login/?next=/admin/jobs/job/dead-letters/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill("pw-for-tests-only")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/admin/jobs/job/dead-letters/$"))

    group = page.locator("#dead-letter-groups tbody tr")
    expect(group).to_have_count(1)
    expect(group).to_contain_text("injected failure")
    asked: list[str] = []

    def confirm(dialog: Any) -> None:  # a group retry asks first, with the count
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    group.get_by_role("button", name="Retry 1").click()
    expect(page.locator(".messagelist")).to_contain_text("Re-sent 1 dead job")
    assert asked == ["Retry the 1 dead job of this group?"]

    wait_until(lambda: Job.objects.get(pk=job.pk).status == "succeeded", timeout=30, what="the retried job")
    page.goto(f"{live_server.url}/admin/jobs/job/{job.pk}/change/")
    expect(page.locator(".field-status_badge")).to_contain_text("succeeded")
    expect(page.locator(".field-action_history")).to_contain_text("operator")
    page.goto(f"{live_server.url}/admin/jobs/job/dead-letters/")
    expect(page.locator("#no-dead-letters")).to_be_visible()
    assert len(email.sent()) == 1

"""Issue 13's "Done means", walked in a real browser on the stack as `make run` starts it
(honcho running the Procfile: runserver, runworkers with the default worker groups,
runscheduler) and a receiver started with the README's command: add an endpoint in the
admin, place an order in the shop, see the signed delivery arrive and appear in the log;
stop the receiver, place another order, see the retries scheduled with their times;
start it again and see the delivery made. Every page fits 1366 px and 390 px."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from tests.support.receiver import free_port
from tests.support.waiting import wait_until
from tests.support.workers import ROOT, descendants, worker_env
from webhooks.models import Delivery

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-the-walk-only"
# README › Webhooks, step 1, word for word (the port is the test's own).
RECEIVER = [sys.executable, "manage.py", "webhook_receiver", "--port"]
WIDTHS = (1366, 390)
SCREENSHOTS = ROOT / "var" / "screenshots"


class Process:
    """A child process with its output in a file."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT) -> None:
        """As Ctrl-C does: the whole process group."""
        if self.proc.poll() is None:
            pids = descendants(self.proc.pid)
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            for pid in pids:  # nothing left behind
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture
def make_run(real_broker: Any, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Process]]:
    """`make run`'s last line, on the test database: web, worker and scheduler."""
    port = free_port()
    env = worker_env(
        BUZZER_PORT=str(port),
        BUZZER_ENV_FILE=str(tmp_path / "no.env"),
        BUZZER_VAR_DIR=str(tmp_path / "var"),
        LOG_FORMAT="text",
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    env.pop("BUZZER_WORKER_GROUPS", None)  # the default topology, as `make run` has it
    honcho = str(Path(sys.executable).parent / "honcho")
    stack = Process(
        [sys.executable, "scripts/with_env.py", honcho, "start", "-e", "/dev/null", "-f", "Procfile"],
        tmp_path / "honcho.log",
        env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: "Quit the server with" in stack.output() and stack.output().count("started rundramatiq") >= 4,
            timeout=90,
            interval=0.3,
            what="runserver and the four worker groups",
        )
        yield url, env, stack
    finally:
        stack.stop()


def fits(page: Page) -> None:
    """The page does not scroll sideways at either width."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{page.url} is {overflow} px too wide at {width} px"
    page.set_viewport_size({"width": 1366, "height": 800})


def place_order(page: Page, url: str, email: str) -> None:
    page.goto(f"{url}/")
    page.get_by_label("Quantity of Restaurant buzzer").fill("1")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_role("button", name="Place order").click()
    page.wait_for_url(re.compile(r"/orders/[0-9a-f-]+/$"))


def test_a_newcomer_adds_an_endpoint_sees_deliveries_and_retries_in_the_admin(
    make_run: tuple[str, dict[str, str], Process], page: Page, tmp_path: Path
) -> None:
    url, env, stack = make_run
    call_command("seed_demo", stdout=io.StringIO())
    # `make run`'s own step: the demo admin, made by the stack's code (its password hashers).
    subprocess.run(
        [sys.executable, "manage.py", "ensure_demo_admin"],
        cwd=ROOT,
        env={**env, "DEMO_ADMIN_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
    )
    hook_port = free_port()
    receiver = Process([*RECEIVER, str(hook_port)], tmp_path / "receiver.log", env)
    wait_until(lambda: "Receiving webhooks on" in receiver.output(), timeout=30, what="the receiver")

    # Add the endpoint in the admin.
    page.set_viewport_size({"width": 1366, "height": 800})
    page.goto(f"{url}/admin/login/?next=/admin/webhooks/endpoint/add/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/admin/webhooks/endpoint/add/")
    fits(page)
    page.locator("#id_url").fill(f"http://127.0.0.1:{hook_port}/hooks")
    page.get_by_label("order.placed").check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("Signing secret of")
    expect(page.locator(".messagelist")).to_contain_text("whsec_")
    fits(page)

    # Place an order in the shop: the receiver prints the signed delivery, the log shows it.
    place_order(page, url, "first@example.com")
    wait_until(lambda: "signature verified: order.placed" in receiver.output(), timeout=60, what="the delivery")
    first = Delivery.objects.select_related("event").get()
    assert first.event.webhook_id in receiver.output()
    page.goto(f"{url}/admin/webhooks/delivery/")
    row = page.locator("#result_list tbody tr").filter(has_text="order.placed")
    expect(row.locator(".buzzer-status-succeeded")).to_be_visible(timeout=15_000)
    fits(page)
    row.locator("th a, td a").first.click()
    expect(page.locator(".field-status_badge")).to_contain_text("succeeded")
    expect(page.locator(".field-webhook_id")).to_contain_text(first.event.webhook_id)
    expect(page.locator("#attempt_log-group")).to_contain_text("204")
    fits(page)

    # Stop the receiver and place another order: the retries are scheduled, with their times.
    receiver.stop()
    place_order(page, url, "second@example.com")
    wait_until(
        lambda: Delivery.objects.filter(status="retrying", attempts__gte=2).exists(),
        timeout=60,
        what="the delivery's first retry (about 5 s after the first attempt) to fail too",
    )
    second = Delivery.objects.exclude(pk=first.pk).get()
    page.goto(f"{url}/admin/webhooks/delivery/{second.pk}/change/")
    expect(page.locator(".field-status_badge")).to_contain_text("retrying")
    next_at = page.locator(".field-next_attempt .readonly").inner_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+ \((in .+|just now|.+ ago)\)", next_at), next_at
    expect(page.locator(".field-delivery_jobs")).to_contain_text("retrying · next attempt at")
    attempts = page.locator("#attempt_log-group tbody tr.has_original")
    expect(attempts).to_have_count(2)
    expect(page.locator("#attempt_log-group")).to_contain_text("Connection")
    fits(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "webhook-delivery-retrying.png"), full_page=True)  # not asserted
    # The delivery's job tells the same: retrying, with the error and the next attempt's time.
    page.locator(".field-delivery_jobs a").first.click()
    page.wait_for_url(re.compile(r"/admin/jobs/job/[0-9a-f-]+/change/$"))
    expect(page.locator("body")).to_contain_text("retrying")
    expect(page.locator("body")).to_contain_text("attempt 2 of 12")
    fits(page)
    page.screenshot(path=str(SCREENSHOTS / "webhook-job-retrying.png"), full_page=True)

    # Start the receiver again: Retry now (or its time) delivers it.
    receiver = Process([*RECEIVER, str(hook_port)], tmp_path / "receiver.log", env)
    wait_until(lambda: receiver.output().count("Receiving webhooks on") == 2, timeout=30, what="the receiver again")
    page.locator("#retry-now").click()
    wait_until(
        lambda: Delivery.objects.filter(pk=second.pk, status="succeeded").exists(),
        timeout=60,
        what="the retried delivery",
    )
    second.refresh_from_db()
    assert receiver.output().count(f"{second.event.webhook_id} /hooks: signature verified") == 1
    page.goto(f"{url}/admin/webhooks/delivery/{second.pk}/change/")
    expect(page.locator(".field-status_badge")).to_contain_text("succeeded")
    expect(page.locator("#attempt_log-group tbody tr.has_original")).to_have_count(3)
    receiver.stop()
    assert "Traceback" not in stack.output(), stack.output()[-3000:]

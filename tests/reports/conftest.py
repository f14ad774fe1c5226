from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from reports import services
from tests.support.reports import new_report


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """Each test stores its report files in a directory of its own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    yield settings.MEDIA_ROOT


@pytest.fixture
def no_throttle(settings: Any) -> None:
    """Progress written at every chunk (of 10 rows), so small data shows it."""
    settings.BUZZER_REPORT_PROGRESS_SECONDS = 0
    settings.BUZZER_REPORT_CHUNK_SIZE = 10


def _user(username: str, **extra: Any) -> Any:
    return get_user_model().objects.create_user(username, password="pw-for-tests-only", **extra)


@pytest.fixture
def user(db: None) -> Any:
    return _user("ada")


@pytest.fixture
def other_user(db: None) -> Any:
    return _user("grace")


@pytest.fixture
def staff_user(db: None) -> Any:
    return _user("boss", is_staff=True, is_superuser=True)


@pytest.fixture
def user_client(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def finished(user, products):
    """A low-stock report of `user`, generated."""
    report = new_report(user, "low_stock", threshold=100)
    services.generate_report(str(report.id))
    report.refresh_from_db()
    return report

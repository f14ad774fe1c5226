"""Settings come from the environment; production refuses to start without a secret."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from tests.support.workers import ROOT


def run_check(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    clean.update({"BUZZER_TESTING": "0", "BUZZER_ENV_FILE": "/nonexistent/.env", **env})
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings');"
            " django.setup(); from django.conf import settings; print(settings.DEBUG)",
        ],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_secret_key():
    result = run_check(DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_production_starts_with_a_secret_key_and_debug_off():
    result = run_check(DEBUG="false", SECRET_KEY="x" * 60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_the_suite_uses_a_redis_server_it_started_itself():
    import redis

    if os.environ.get("TEST_REDIS_URL"):
        pytest.skip("TEST_REDIS_URL names the suite's Redis explicitly")
    server_pid = redis.Redis.from_url(settings.REDIS_URL).info("server")["process_id"]
    parent = int(open(f"/proc/{server_pid}/stat").read().split(") ")[1].split()[1])
    assert parent == os.getpid(), "the suite's Redis must be a server this run started"
    assert ":6379/" not in settings.REDIS_URL


def namespace_of(**env: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings');"
            " django.setup(); from django.conf import settings;"
            " print(settings.BUZZER_NAMESPACE, settings.DRAMATIQ_BROKER['OPTIONS'].get('namespace'))",
        ],
        cwd=ROOT,
        env={**os.environ, "BUZZER_TESTING": "0", "DEBUG": "1", "BUZZER_NAMESPACE": "", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    namespace, broker_namespace = result.stdout.split()
    assert namespace == broker_namespace  # Dramatiq's keys carry it too
    return namespace


def test_each_installation_gets_its_own_redis_namespace_from_its_database():
    a = namespace_of(DATABASE_URL="sqlite:////srv/shop-a/db.sqlite3")
    b = namespace_of(DATABASE_URL="sqlite:////srv/shop-b/db.sqlite3")
    pg = namespace_of(DATABASE_URL="postgres://u@db.example:5432/shop")
    assert len({a, b, pg}) == 3 and all(n.startswith("buzzer-") for n in (a, b, pg))
    assert namespace_of(DATABASE_URL="postgres://other-user:pw@db.example:5432/shop") == pg  # same database
    assert namespace_of(DATABASE_URL="sqlite:////srv/shop-a/db.sqlite3", BUZZER_NAMESPACE="shop") == "shop"


@pytest.mark.django_db
def test_sqlite_runs_in_wal_mode_with_immediate_transactions():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite settings only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
    assert settings.DATABASES["default"]["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_every_dramatiq_middleware_is_listed_explicitly():
    middleware = settings.DRAMATIQ_BROKER["MIDDLEWARE"]
    assert "jobs.middleware.Retries" in middleware
    assert "jobs.middleware.JobTracking" in middleware
    assert not any("Prometheus" in m or "AdminMiddleware" in m for m in middleware)
    # tracking must come before Retries: Dramatiq runs "after" hooks in reverse
    assert middleware.index("jobs.middleware.JobTracking") < middleware.index("jobs.middleware.Retries")


def test_production_settings_pass_the_deploy_check():
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    clean.update(
        BUZZER_TESTING="0",
        BUZZER_ENV_FILE="/nonexistent/.env",
        DEBUG="false",
        SECRET_KEY="a-real-secret-" + "k" * 50,
        ALLOWED_HOSTS="shop.example.com",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def base_url_of(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in {"BUZZER_BASE_URL", "BUZZER_PORT", "PORT"}}
    clean.update({"BUZZER_ENV_FILE": "/nonexistent/.env", "BUZZER_TESTING": "0", "DEBUG": "1", **env})
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings');"
            " django.setup(); from django.conf import settings; print(settings.BUZZER_BASE_URL)",
        ],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_report_links_follow_the_port_make_run_serves_on():
    # make run PORT=8001 passes BUZZER_PORT; honcho sets PORT to a number of its own.
    assert base_url_of(BUZZER_PORT="8001", PORT="5000") == "http://127.0.0.1:8001"
    assert base_url_of() == "http://127.0.0.1:8000"
    assert base_url_of(BUZZER_PORT="8001", BUZZER_BASE_URL="https://shop.example.com") == "https://shop.example.com"

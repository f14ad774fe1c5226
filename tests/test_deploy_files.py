"""The production files agree with the code and with each other: every queue has workers
in Procfile.production and in the systemd units, exactly once; the Procfile's default
sizes are the units'; a stop waits for the longest job of each class; the units are
valid systemd units; gunicorn's worker count follows the CPUs unless WEB_CONCURRENCY
says otherwise; the release step stops loudly on a bad environment."""

from __future__ import annotations

import re
import runpy
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import dramatiq
import pytest
from django.conf import settings

from jobs.management.commands.runworkers import known_queues
from tests.support import procfile
from tests.support.workers import ROOT

DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
WORKER_LINE = re.compile(
    r"runworkers --queues (?P<queues>\S+) --processes \$\{WORKER_(?P<cls>[A-Z]+)_PROCESSES:-(?P<processes>\d+)\} "
    r"--threads \$\{WORKER_(?P=cls)_THREADS:-(?P<threads>\d+)\} "
    r"--worker-shutdown-timeout \$\{WORKER_(?P=cls)_SHUTDOWN_MS:-(?P<shutdown>\d+)\}$"
)
WRITER_FLUSH_SECONDS = 15  # jobs/writer.py keeps trying this long at shutdown


def procfile_workers() -> dict[str, dict[str, str]]:
    workers = {}
    for name, command in procfile.entries().items():
        if name.startswith("worker_"):
            match = WORKER_LINE.search(command)
            assert match, f"{name}: {command}"
            assert name == f"worker_{match['cls'].lower()}"
            workers[match["cls"].lower()] = match.groupdict()
    return workers


def env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def unit_workers() -> dict[str, dict[str, str]]:
    return {path.stem.removeprefix("worker-"): env_file(path) for path in SYSTEMD.glob("worker-*.env")}


def stop_timeout(unit: str) -> int:
    """TimeoutStopSec of a unit, a drop-in of the instance winning over the template."""
    template = re.sub(r"@[^.]+\.service$", "@.service", unit)
    value = None
    for path in [SYSTEMD / template, *sorted((SYSTEMD / f"{unit}.d").glob("*.conf"))]:
        found = re.findall(r"^TimeoutStopSec=(\d+)$", path.read_text(), re.MULTILINE)
        value = int(found[-1]) if found else value
    assert value is not None, unit
    return value


def test_every_queue_has_workers_of_exactly_one_class_in_the_procfile_and_the_units():
    for workers in (procfile_workers(), unit_workers()):
        assert set(workers) == {"standard", "premium", "reports", "webhooks"}
        consumed = [q for spec in workers.values() for q in spec.get("queues", spec.get("WORKER_QUEUES", "")).split()]
        assert sorted(consumed) == sorted(set(consumed)), consumed  # none twice
        assert set(consumed) == known_queues()  # none left without workers, none unknown


def test_the_procfile_defaults_are_the_units_sizes():
    units = unit_workers()
    for cls, spec in procfile_workers().items():
        unit = units[cls]
        assert (spec["queues"], spec["processes"], spec["threads"], spec["shutdown"]) == (
            unit["WORKER_QUEUES"],
            unit["WORKER_PROCESSES"],
            unit["WORKER_THREADS"],
            unit["WORKER_SHUTDOWN_MS"],
        ), cls


def test_a_stop_waits_for_the_longest_job_of_each_class_and_systemd_waits_longer_still():
    known_queues()  # imports every tasks module: their actors are declared
    broker = dramatiq.get_broker()
    limits: dict[str, int] = {}
    for name in broker.get_declared_actors():
        actor = broker.get_actor(name)
        limit = actor.options.get("time_limit") or settings.BUZZER_TIME_LIMIT_MS
        limits[actor.queue_name] = max(limits.get(actor.queue_name, 0), limit)
    # A premium order's jobs are actors of the default queue sent to the premium one.
    limits["premium"] = max(limits.get("premium", 0), limits["default"])
    for cls, spec in unit_workers().items():
        shutdown_ms = int(spec["WORKER_SHUTDOWN_MS"])
        longest = max(limits.get(queue, 0) for queue in spec["WORKER_QUEUES"].split())
        assert shutdown_ms >= longest, (cls, shutdown_ms, longest)
        assert stop_timeout(f"buzzer-worker@{cls}.service") >= shutdown_ms / 1000 + WRITER_FLUSH_SECONDS, cls
    gunicorn = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert stop_timeout("buzzer-web.service") > gunicorn["graceful_timeout"]
    assert stop_timeout("buzzer-scheduler.service") > 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_units_are_valid(tmp_path: Path):
    venv_bin = Path(sys.executable).parent
    names = []
    for path in SYSTEMD.glob("*.service"):
        text = path.read_text().replace("/srv/buzzer/.venv/bin/", f"{venv_bin}/").replace("/srv/buzzer", str(ROOT))
        name = path.name.replace("@.service", "@standard.service")
        (tmp_path / name).write_text(text)
        names.append(name)
    shutil.copy(SYSTEMD / "buzzer.target", tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", *names, "buzzer.target"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    for name in names:
        assert "KillMode=mixed" in (tmp_path / name).read_text(), name  # one SIGTERM, to the main process


def test_gunicorn_runs_two_workers_per_cpu_plus_one_unless_web_concurrency_says(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    config = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert config["workers"] == 2 * config["cpu_count"]() + 1
    assert config["accesslog"] == "-" and "%(M)s" in config["access_log_format"]
    assert config["max_requests"] > 0 and config["max_requests_jitter"] > 0
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GUNICORN_BIND", "127.0.0.1:9001,unix:/run/buzzer/web.sock")
    config = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert config["workers"] == 3
    assert config["bind"] == ["127.0.0.1:9001", "unix:/run/buzzer/web.sock"]


def test_honcho_reads_the_production_procfile():
    honcho = Path(sys.executable).parent / "honcho"
    result = subprocess.run([str(honcho), "check", "-f", str(procfile.PRODUCTION)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "scheduler_standby" in result.stderr + result.stdout


def test_the_release_step_stops_before_the_database_when_the_settings_are_unfit_for_production(tmp_path: Path):
    database = tmp_path / "db.sqlite3"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHON": sys.executable,
        "BUZZER_ENV_FILE": str(tmp_path / "none.env"),
        "BUZZER_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{database}",
        "DEBUG": "0",
        "SECRET_KEY": "a-long-enough-secret-key-for-this-test-only-0123456789abcdef",
        "ALLOWED_HOSTS": "",  # check --deploy: security.W020
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    result = subprocess.run(
        ["bash", str(DEPLOY / "release.sh")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "security.W020" in result.stderr + result.stdout
    assert "release: FAILED: manage.py check --deploy --fail-level WARNING" in result.stderr
    assert "release: migrate" not in result.stderr and not database.exists()


def production_example_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHON": sys.executable,
        "BUZZER_ENV_FILE": str(DEPLOY / "production.env.example"),
        "BUZZER_VAR_DIR": str(tmp_path),
        **overrides,
    }


def test_the_documented_production_values_pass_check_deploy(tmp_path: Path):
    env = production_example_env(tmp_path, SECRET_KEY=secrets.token_urlsafe(50))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_release_step_refuses_an_environment_file_with_placeholders_left(tmp_path: Path):
    env = production_example_env(tmp_path)
    result = subprocess.run(
        ["bash", str(DEPLOY / "release.sh")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "still has CHANGE-ME placeholders" in result.stderr
    assert "SECRET_KEY=CHANGE-ME" in result.stderr  # the lines are shown
    assert "release: check" not in result.stderr

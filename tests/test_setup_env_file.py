"""`.env` is read by one parser everywhere (django-environ, as the settings read it):
a copy of `.env.example` works for `make run`, a value such as `Buzzer <orders@…>`
needs no quotes, and a missing demo admin password is generated, never an error."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tests.support.workers import ROOT

FROM = "Buzzer <orders@example.com>"


def env_file(tmp_path: Path) -> Path:
    """`.env.example` as a newcomer copies it, plus an unquoted value with spaces and <>."""
    path = tmp_path / ".env"
    path.write_text((ROOT / ".env.example").read_text() + f"DEFAULT_FROM_EMAIL={FROM}\n")
    return path


def clean_environment(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DEMO_ADMIN_PASSWORD"}}
    return {**keep, "BUZZER_TESTING": "0", **extra}


def test_make_run_reads_env_with_the_settings_parser_never_the_shell():
    makefile = (ROOT / "Makefile").read_text()
    recipes = [line for line in makefile.splitlines() if line.startswith("\t")]
    assert not [line for line in recipes if "source .env" in line or ". .env" in line]
    # honcho's own .env reading is off; scripts/with_env.py hands it the environment.
    assert "scripts/with_env.py $(VENV)/bin/honcho start -e /dev/null" in makefile


def test_the_env_wrapper_reads_an_unquoted_value_as_the_settings_do(tmp_path: Path):
    path = env_file(tmp_path)
    script = "import os; print(os.environ['DEFAULT_FROM_EMAIL']); print(os.environ['SECRET_KEY'])"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "with_env.py"), sys.executable, "-c", script],
        env=clean_environment(BUZZER_ENV_FILE=str(path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [FROM, "change-me"]

    settings = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings');"
            " django.setup(); from django.conf import settings; print(settings.DEFAULT_FROM_EMAIL)",
        ],
        cwd=ROOT,
        env=clean_environment(BUZZER_ENV_FILE=str(path), BUZZER_VAR_DIR=str(tmp_path / "var")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert settings.returncode == 0, settings.stderr
    assert settings.stdout.strip() == FROM


def test_the_environment_wins_over_env_as_in_the_settings(tmp_path: Path):
    path = env_file(tmp_path)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "with_env.py"), "sh", "-c", 'echo "$SECRET_KEY"'],
        env=clean_environment(BUZZER_ENV_FILE=str(path), SECRET_KEY="from-the-shell"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "from-the-shell"


@pytest.mark.parametrize("password", ["", "pass word <from> .env"], ids=["unset", "in-env-file"])
def test_ensure_demo_admin_works_with_a_copy_of_env_example(tmp_path: Path, password: str):
    """The command as `make run` starts it (no shell in between): the settings load the
    copied .env, with or without a DEMO_ADMIN_PASSWORD."""
    path = env_file(tmp_path)
    if password:
        path.write_text(path.read_text() + f"DEMO_ADMIN_PASSWORD={password}\n")
    database = tmp_path / "db.sqlite3"
    env = clean_environment(
        BUZZER_ENV_FILE=str(path), BUZZER_VAR_DIR=str(tmp_path / "var"), DATABASE_URL=f"sqlite:///{database}"
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    migrate = subprocess.run(
        [*manage, "migrate", "-v0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stderr
    result = subprocess.run(
        [*manage, "ensure_demo_admin"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    if password:
        assert f"Demo admin created: user 'admin', password '{password}'" in result.stdout
    else:
        assert "Demo admin created: user 'admin', password '" in result.stdout
        assert "generated" in result.stdout


@pytest.mark.django_db
def test_a_missing_demo_password_is_generated_and_printed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    out = StringIO()
    call_command("ensure_demo_admin", stdout=out)
    printed = out.getvalue().split("password '")[1].split("'")[0]
    assert len(printed) >= 12
    assert get_user_model().objects.get(username="admin").check_password(printed)

    again = StringIO()
    call_command("ensure_demo_admin", stdout=again)
    assert "exists" in again.getvalue()
    assert get_user_model().objects.get(username="admin").check_password(printed)

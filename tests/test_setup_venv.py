"""`make` on a Python without ensurepip (Debian's python3 without python3-venv): the
half-made venv is removed, never used, and the one command that fixes it is printed;
a venv an earlier such run left behind is found and removed too.

The Python is a wrapper that behaves like Debian's: `-m venv` makes the venv without
pip, prints Debian's message and fails; `-m ensurepip` does not exist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.workers import ROOT

VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
FIX = f"sudo apt-get install python{VERSION}-venv"

DEBIAN_MESSAGE = f"""The virtual environment was not created successfully because ensurepip is not
available.  On Debian/Ubuntu systems, you need to install the python3-venv
package using the following command.

    apt install python{VERSION}-venv
"""


@pytest.fixture
def debian_python(tmp_path: Path) -> Path:
    wrapper = tmp_path / "bin" / f"python{VERSION}"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/bash\n"
        f"REAL={sys.executable}\n"
        'if [ "$1" = -m ] && [ "$2" = venv ]; then\n'
        '  shift 2; "$REAL" -m venv --without-pip "$@" || exit 1\n'
        f"  cat <<'MSG'\n{DEBIAN_MESSAGE}MSG\n"
        "  exit 1\n"
        "fi\n"
        'if [ "$1" = -m ] && [ "$2" = ensurepip ]; then echo "$0: No module named ensurepip" >&2; exit 1; fi\n'
        'exec "$REAL" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def fake_apt_path(tmp_path: Path) -> str:
    """A PATH with an apt-get on it (the advice names apt-get only where there is one)."""
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    (tools / "apt-get").write_text("#!/bin/sh\nexit 1\n")
    (tools / "apt-get").chmod(0o755)
    return f"{tools}:{os.environ['PATH']}"


def make_venv(tmp_path: Path, python: Path, venv: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": fake_apt_path(tmp_path)}
    return subprocess.run(
        ["make", "--no-print-directory", "venv", f"VENV={venv}", f"PYTHON={python}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_python_without_ensurepip_leaves_no_venv_and_names_the_package(tmp_path: Path, debian_python: Path):
    venv = tmp_path / "venv"
    result = make_venv(tmp_path, debian_python, venv)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert FIX in output
    assert "No module named pip" not in output
    assert not venv.exists(), "the venv without pip must not stay behind"


@pytest.mark.parametrize("stamped", [False, True], ids=["after-a-failed-run", "stamped-as-installed"])
def test_an_existing_venv_without_pip_is_removed(tmp_path: Path, debian_python: Path, stamped: bool):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    if stamped:  # requirements.txt older than the stamp: only the broken-venv check runs the recipe
        (venv / ".installed").touch()
    result = make_venv(tmp_path, debian_python, venv)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "has no working pip" in output
    assert FIX in output
    assert "No module named pip" not in output
    assert not venv.exists()


def test_the_venv_script_keeps_a_venv_whose_pip_works(tmp_path: Path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    # Its "python" runs the suite's own interpreter, which has pip.
    (venv / "bin" / "python").symlink_to(sys.executable)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ensure_venv.py"), str(venv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (venv / "bin" / "python").is_symlink()

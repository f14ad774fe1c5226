"""The virtualenv `make` installs into: created when missing, made again when broken, and
when this Python cannot make one, the one command that fixes it.

Run by the Python `make` picked (standard library only):
`python scripts/ensure_venv.py .venv [PYTHON]`, PYTHON (the one that makes the venv) being
the interpreter running it unless named.

Debian and Ubuntu ship Python without `ensurepip` (it is in the pythonX.Y-venv package):
`python3 -m venv .venv` then fails half way and leaves a `.venv` without pip, after which
every `make` would fail with `No module named pip`. Such a venv (or one whose interpreter
is gone, as after a Python upgrade) is removed, never used.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def pip_works(venv: Path) -> bool:
    """Whether the venv's own interpreter runs and has pip."""
    python = venv / "bin" / "python"
    try:
        done = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, timeout=120, check=False)
    except OSError:  # no interpreter, or a dangling link to one that was uninstalled
        return False
    return done.returncode == 0


def remove(venv: Path) -> None:
    # A symbolic link (a venv shared by worktrees) is unlinked, never emptied.
    if venv.is_symlink() or venv.is_file():
        venv.unlink()
    elif venv.exists():
        shutil.rmtree(venv)


def how_to_fix() -> str:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if shutil.which("apt-get"):
        install = f"sudo apt-get install python{version}-venv"
        return f"Install it with:\n\n    {install}\n\nthen run make again."
    return (
        "Install your system's venv package for this Python (it provides ensurepip), or point make at "
        "another Python 3.10-3.12, e.g. `make run PYTHON=/usr/local/bin/python3.12`."
    )


def create(venv: Path, python: str) -> bool:
    done = subprocess.run([python, "-m", "venv", str(venv)], check=False)
    return done.returncode == 0 and pip_works(venv)


def main(argv: list[str]) -> int:
    venv = Path(argv[1] if len(argv) > 1 else ".venv")
    python = argv[2] if len(argv) > 2 else sys.executable
    if venv.exists() or venv.is_symlink():
        if pip_works(venv):
            return 0
        print(f"{venv} has no working pip (a venv made without ensurepip, or its Python is gone): removing it.")
        remove(venv)
    if create(venv, python):
        return 0
    remove(venv)
    print(
        f"\nThis Python ({python}, {sys.version.split()[0]}) cannot create a virtualenv with pip: "
        f"its ensurepip module is missing. {how_to_fix()}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

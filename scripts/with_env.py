"""Run a command with `.env` in its environment, read as the settings read it.

`python scripts/with_env.py COMMAND [ARGS...]`. The file is parsed by django-environ, as in
config/settings.py (`BUZZER_ENV_FILE` names another file), and like there the process's own
environment wins over the file. A shell's `source .env` would break on a value such as
`DEFAULT_FROM_EMAIL=Buzzer <orders@example.com>`, and honcho's own `.env` reading parses
differently and lets the file win: `make run` starts honcho through this with `-e /dev/null`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import environ

ROOT = Path(__file__).resolve().parent.parent


def load() -> None:
    path = os.environ.get("BUZZER_ENV_FILE") or str(ROOT / ".env")
    environ.Env.read_env(path, overwrite=False)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: with_env.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    load()
    os.execvp(argv[1], argv[1:])  # noqa: S606 - the command make gives, argument by argument
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv))

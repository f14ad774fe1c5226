#!/usr/bin/env bash
# The release step: run once per deploy, before the new code's processes start (and
# while the old ones still run: see docs/DEPLOY.md, "Migrations without downtime").
#
#   deploy/release.sh            # with the environment of production (BUZZER_ENV_FILE or .env)
#   PYTHON=/srv/buzzer/.venv/bin/python deploy/release.sh
#
# 1. `check --deploy --fail-level WARNING`: the settings are fit for production (DEBUG
#    off, SECRET_KEY, ALLOWED_HOSTS, HTTPS settings...). It runs first, so that a wrong
#    environment stops the release before it touches the database.
# 2. `migrate --noinput`: the schema of the new code.
# 3. `collectstatic --noinput`: the hashed, compressed static files WhiteNoise serves.
# Any failure stops the script with a non-zero exit and a line saying which step failed.
set -euo pipefail

cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

# The example file's placeholders left in the environment file: stop before anything runs.
env_file="${BUZZER_ENV_FILE:-.env}"
if [[ -f "$env_file" ]] && grep -n "CHANGE-ME" "$env_file" >&2; then
    echo "release: FAILED: $env_file still has CHANGE-ME placeholders (above)" >&2
    exit 1
fi

step() {
    echo "release: $*" >&2
    if ! "$PYTHON" manage.py "$@"; then
        echo "release: FAILED: manage.py $* (nothing after this step ran)" >&2
        exit 1
    fi
}

step check --deploy --fail-level WARNING
step migrate --noinput
step collectstatic --noinput -v 1
echo "release: done" >&2

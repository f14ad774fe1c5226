"""Settings of bench/capacity.py's gunicorn and worker processes: the benchmarks' settings
(bench/settings.py), plus the probe that counts every SQL statement and Redis round trip
of the process (bench/capacity_probe.py; inert without BUZZER_CAPACITY_PROBE_DIR)."""

from bench.capacity_probe import install
from bench.settings import *  # noqa: F403

install()

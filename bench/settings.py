"""Settings of the benchmarks' `runworkers` processes: Buzzer's own, plus the `bench`
app, whose `actors` module (bench/actors.py) `rundramatiq` then loads with the tasks."""

from config.settings import *  # noqa: F403
from config.settings import DRAMATIQ_AUTODISCOVER_MODULES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
DRAMATIQ_AUTODISCOVER_MODULES = [*DRAMATIQ_AUTODISCOVER_MODULES, "actors"]

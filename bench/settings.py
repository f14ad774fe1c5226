"""Settings of the benchmarks that run real `runworkers` processes on actors of their own:
the project's settings, plus this package as an app, so that `rundramatiq` finds the
probe actor in bench/tasks.py as it finds every app's `tasks` module, and the load
actors in bench/actors.py."""

from config.settings import *  # noqa: F403
from config.settings import DRAMATIQ_AUTODISCOVER_MODULES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
DRAMATIQ_AUTODISCOVER_MODULES = [*DRAMATIQ_AUTODISCOVER_MODULES, "actors"]

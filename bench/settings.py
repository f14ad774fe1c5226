"""Settings of the benchmarks that run real `runworkers` processes on actors of their own:
the project's settings, plus this package as an app, so that `rundramatiq` finds the
probe actors in bench/tasks.py as it finds every app's `tasks` module."""

from config.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]  # noqa: F405

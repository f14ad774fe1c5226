"""The web app under gunicorn, as production runs it, against the suite's database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.limits import UNLIMITED
from tests.support.redis_server import free_port
from tests.support.workers import ROOT, worker_env


class WebProcess:
    def __init__(
        self, workers: int = 2, threads: int = 8, config: Path | None = None, log: Path | None = None, **env: str
    ) -> None:
        self.port = free_port()
        self.log_path = log or ROOT / "var" / f"test-web-{os.getpid()}-{time.monotonic_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--preload",
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
        ]
        if config is not None:
            command += ["--config", str(config)]
        env.setdefault("DEBUG", "0")
        env.setdefault("SECRET_KEY", "fault-suite-secret-key-" + "x" * 40)
        env.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
        env.setdefault("SECURE_SSL_REDIRECT", "0")
        for name, rate in UNLIMITED.items():
            env.setdefault(name, rate)
        # DEBUG off serves the hashed files of the manifest, as production does: collect them first.
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=worker_env(**env),
            check=True,
        )
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=worker_env(**env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}: {self.output()}")
            try:
                urllib.request.urlopen(self.url + "/", timeout=2).read()  # noqa: S310 - local test server
                return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn not ready after {timeout}s: {self.output()}")

    def output(self) -> str:
        return self.output_all()[-5000:]

    def output_all(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

"""Make sure the Debian packages some tests drive are there: Chromium for the browser
tests (`tests/browser`), PgBouncer for the fault test that runs Buzzer behind it
(`tests/faults/test_pgbouncer.py`), and Prometheus' `promtool` for the checks of
/metrics and of the example alert rules (`tests/test_prometheus.py`).

Used by `make test` (standard library only). Installs what is missing with apt-get when
we may (root, or passwordless sudo); otherwise says loudly which tests will be skipped.
It never fails: the rest of the suite runs without them. Never use `playwright install`
here: it downloads its own browser builds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

DEFAULT_CHROMIUM = "/usr/bin/chromium"
PGBOUNCER = "/usr/sbin/pgbouncer"
PROMTOOL = "/usr/bin/promtool"


def chromium_path() -> str:
    """The browser the tests launch (`BUZZER_CHROMIUM` overrides it, as in tests/browser/conftest.py)."""
    return os.environ.get("BUZZER_CHROMIUM") or DEFAULT_CHROMIUM


def present(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def shout(message: str) -> None:
    print(f"!!! {message}", flush=True)


def privilege_prefix() -> list[str] | None:
    """`[]` as root, `["sudo", "-n"]` with passwordless sudo, None when we may not install."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["sudo", "-n"]
    return None


def has_candidate(package: str) -> bool:
    """Whether apt's package lists know the package (an empty or stale cache does not)."""
    policy = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True, check=False)
    for line in policy.stdout.splitlines():
        name, _, value = line.strip().partition(":")
        if name == "Candidate":
            return value.strip() not in ("", "(none)")
    return False


def install(prefix: list[str], package: str, path: str, recommends: bool = True) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    wait_for_lock = ["-o", "DPkg::Lock::Timeout=300"]  # another apt-get may be running
    if not has_candidate(package):
        print(f"== {package} missing: apt-get update", flush=True)
        subprocess.run([*prefix, "apt-get", *wait_for_lock, "update", "-qq"], env=env, check=False)
    print(f"== {package} missing: apt-get install {package}", flush=True)
    options = [] if recommends else ["--no-install-recommends"]
    done = subprocess.run(
        [*prefix, "apt-get", *wait_for_lock, "install", "-y", "-qq", *options, package],
        env=env,
        check=False,
    )
    return done.returncode == 0 and present(path)


def ensure(package: str, path: str, skipped: str, recommends: bool = True) -> None:
    if present(path):
        return
    how_to = f"install it with `sudo apt-get install {package}` and run make test again"
    prefix = privilege_prefix()
    if prefix is None or not shutil.which("apt-get"):
        shout(f"{package} is not installed ({path}): {skipped} will be SKIPPED; {how_to}.")
    elif not install(prefix, package, path, recommends):
        shout(f"Installing {package} failed: {skipped} will be SKIPPED; {how_to}.")


def main() -> int:
    path = chromium_path()
    if path != DEFAULT_CHROMIUM and not present(path):
        shout(f"BUZZER_CHROMIUM={path} is not an executable: the browser tests will be SKIPPED.")
    else:
        ensure("chromium", path, "the browser tests")
    ensure("pgbouncer", PGBOUNCER, "the PgBouncer fault test")
    # Only for promtool: without its recommended node exporter (a daemon we do not want).
    ensure("prometheus", PROMTOOL, "the promtool checks of /metrics and the alert rules", recommends=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

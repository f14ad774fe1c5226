"""Make sure Debian's Chromium is there for the browser tests (`tests/browser`).

Used by `make test` (standard library only). Installs the `chromium` package with apt-get
when it is missing and we may (root, or passwordless sudo); otherwise says loudly that the
browser tests will be skipped. It never fails: the rest of the suite runs without Chromium.
Never use `playwright install` here: it downloads its own browser builds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

DEFAULT_CHROMIUM = "/usr/bin/chromium"
HOW_TO = "install it with `sudo apt-get install chromium` and run make test again"


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


def has_candidate() -> bool:
    """Whether apt's package lists know `chromium` (an empty or stale cache does not)."""
    policy = subprocess.run(["apt-cache", "policy", "chromium"], capture_output=True, text=True, check=False)
    for line in policy.stdout.splitlines():
        name, _, value = line.strip().partition(":")
        if name == "Candidate":
            return value.strip() not in ("", "(none)")
    return False


def install(prefix: list[str]) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    wait_for_lock = ["-o", "DPkg::Lock::Timeout=300"]  # another apt-get may be running
    if not has_candidate():
        print("== Chromium missing: apt-get update", flush=True)
        subprocess.run([*prefix, "apt-get", *wait_for_lock, "update", "-qq"], env=env, check=False)
    print("== Chromium missing: apt-get install chromium (about 20 s)", flush=True)
    done = subprocess.run(
        [*prefix, "apt-get", *wait_for_lock, "install", "-y", "-qq", "chromium"],
        env=env,
        check=False,
    )
    return done.returncode == 0 and present(DEFAULT_CHROMIUM)


def main() -> int:
    path = chromium_path()
    if present(path):
        return 0
    if path != DEFAULT_CHROMIUM:
        shout(f"BUZZER_CHROMIUM={path} is not an executable: the browser tests will be SKIPPED.")
        return 0
    prefix = privilege_prefix()
    if prefix is None or not shutil.which("apt-get"):
        shout(f"Chromium is not installed ({DEFAULT_CHROMIUM}): the browser tests will be SKIPPED; {HOW_TO}.")
        return 0
    if not install(prefix):
        shout(f"Installing Chromium failed: the browser tests will be SKIPPED; {HOW_TO}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

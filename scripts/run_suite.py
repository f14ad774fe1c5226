"""`make test`: the whole suite in two runs of pytest (standard library only).

1. Everything but the fault and browser tests on TEST_WORKERS pytest-xdist workers (2 by
   default; 0 runs them in this process). Each worker has its own test database
   (pytest-django suffixes its name: test.sqlite3_gw0, test_<db>_gw0), its own Redis
   server and its own Redis namespace (buzzer-test-gw0), so they never share state.
2. The fault and browser tests (and those marked `serial`), one at a time: they kill
   processes, start whole stacks and measure time.

The arguments (`make test PYTEST_ARGS=...`) go to both runs; tests/conftest.py
(BUZZER_SUITE_PART) puts each test in its part, so a -k, -m, path or --lf of the caller
narrows each part. The exit status is non-zero when either part failed; 5 ("no tests
collected") only when neither part had a test to run.
"""

from __future__ import annotations

import os
import subprocess
import sys

NO_TESTS_COLLECTED = 5
INTERRUPTED, INTERNAL_ERROR, USAGE_ERROR = 2, 3, 4
STOP_AT_FIRST_FAILURE = ("-x", "--exitfirst", "--maxfail", "--sw", "--stepwise")


def run_part(part: str, options: list[str], args: list[str]) -> int:
    print(f"== make test, {part} part: pytest {' '.join([*options, *args])}", flush=True)
    env = {**os.environ, "BUZZER_SUITE_PART": part}
    return subprocess.call([sys.executable, "-m", "pytest", *options, *args], env=env)


def combined(codes: list[int]) -> int:
    failed = [code for code in codes if code not in (0, NO_TESTS_COLLECTED)]
    if failed:
        return failed[0]
    return NO_TESTS_COLLECTED if all(code == NO_TESTS_COLLECTED for code in codes) else 0


def main(args: list[str]) -> int:
    workers = os.environ.get("TEST_WORKERS", "2")
    codes = [run_part("parallel", ["-n", workers], args)]
    stop_early = any(arg.split("=")[0] in STOP_AT_FIRST_FAILURE for arg in args)
    failed = codes[0] not in (0, NO_TESTS_COLLECTED)
    if codes[0] in (INTERRUPTED, INTERNAL_ERROR, USAGE_ERROR) or (failed and stop_early):
        print("== make test: the serial part (fault and browser tests) did not run", flush=True)
        return codes[0]
    codes.append(run_part("serial", [], args))
    status = combined(codes)
    if status not in (0, NO_TESTS_COLLECTED):
        print(f"== make test failed: parallel part exit {codes[0]}, serial part exit {codes[1]}", flush=True)
    return status


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)

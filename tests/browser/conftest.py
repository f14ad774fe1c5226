"""Browser tests: Playwright for Python (pytest-playwright) driving Debian's Chromium.

- The browser is `/usr/bin/chromium` (`apt-get install chromium`; `make test` installs it
  when it may), or `BUZZER_CHROMIUM`. Never `playwright install`: it downloads its own
  browser builds. Without the browser every test marked `browser` is skipped, loudly,
  and the rest of the suite runs.
- The sync Playwright API keeps an asyncio loop running in the test thread for as long as
  Playwright is started, and Django refuses ORM calls while a loop runs. So Playwright
  lives only as long as this package (not the whole session, as pytest-playwright has it),
  and `DJANGO_ALLOW_ASYNC_UNSAFE` is set only meanwhile: the rest of the suite keeps
  Django's check.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserType, Playwright, sync_playwright

CHROMIUM = os.environ.get("BUZZER_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # the suite runs as root
    "--disable-gpu",
    # No connections to Google's services (refused here, and noisy about it).
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SKIP_REASON = "Chromium not installed: sudo apt-get install chromium"
HERE = Path(__file__).resolve().parent
SKIPPED = pytest.StashKey[int]()


def chromium_present() -> bool:
    return os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)
    if chromium_present():
        return
    skip = pytest.mark.skip(reason=f"{SKIP_REASON} (no {CHROMIUM})")
    browser_items = [item for item in items if item.get_closest_marker("browser")]
    for item in browser_items:
        item.add_marker(skip)
    config.stash[SKIPPED] = len(browser_items)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    skipped = config.stash.get(SKIPPED, 0)
    if skipped:
        terminalreporter.section("BROWSER TESTS SKIPPED", sep="!", red=True, bold=True)
        terminalreporter.line(
            f"{skipped} browser test(s) did not run: {SKIP_REASON} (no executable at {CHROMIUM}).",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options (--headed, --slowmo, …) plus Debian's Chromium."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="package", autouse=True)
def _django_orm_beside_playwright() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


# pytest-playwright's session-scoped chain, narrowed to this package (see the docstring).


@pytest.fixture(scope="package")
def playwright(_pw_api_request_contexts: Any) -> Iterator[Playwright]:
    with sync_playwright() as pw:
        if _pw_api_request_contexts:  # --tracing records API requests too
            _pw_api_request_contexts.instrument(pw)
        yield pw


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return getattr(playwright, browser_name)


@pytest.fixture(scope="package")
def launch_browser(browser_type_launch_args: dict[str, Any], browser_type: BrowserType) -> Callable[..., Browser]:
    def launch(**kwargs: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="package")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def browser_context_args(
    pytestconfig: pytest.Config,
    playwright: Playwright,
    device: str | None,
    base_url: str | None,
    _pw_artifacts_folder: Any,
) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if device:  # --device
        args.update(playwright.devices[device])
    if base_url:  # --base-url
        args["base_url"] = base_url
    if pytestconfig.getoption("--video") in ("on", "retain-on-failure"):
        args["record_video_dir"] = _pw_artifacts_folder.name
    return args

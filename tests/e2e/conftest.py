"""Real-browser fixtures: Debian's Chromium driven by Playwright, against the whole local stack
(`make run`'s launcher: relay, sandbox portal, embedded AWS, demo partners) on free loopback ports.

Chromium cannot come from pip. Without it these tests skip locally, with the reason, and FAIL under
CI (CI=true), where `.ci/run` installs it. A failing test leaves a screenshot in
test-artifacts/e2e/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.stack import Launcher

ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One launched stack for the whole browser session (it takes seconds to start)."""
    launcher = Launcher(tmp_path_factory.mktemp("e2e-stack"))
    launcher.start()
    record = json.loads((launcher.state_dir / "stack.json").read_text(encoding="utf-8"))
    record["log_tail"] = launcher.log_tail  # for a failing test's message
    yield record
    launcher.stop()


@pytest.fixture
def sandbox_control(stack: dict[str, Any]) -> Iterator[Any]:
    """POST to the sandbox's control routes; everything is reset after the test."""
    import requests

    app_url = stack["sandbox"]["app_url"]

    def control(path: str, body: dict[str, Any] | None = None) -> Any:
        return requests.post(f"{app_url}{path}", json=body or {}, timeout=10)

    yield control
    control("/sandbox/reset")


def _context(browser: Any, request: pytest.FixtureRequest, **options: Any) -> Iterator[Any]:
    context = browser.new_context(**options)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    failed = any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False) for when in ("setup", "call")
    )
    if failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with_name = request.node.name.replace("/", "_")
        page.screenshot(path=str(ARTIFACTS / f"{with_name}.png"), full_page=True)
    context.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _context(browser, request, locale="ja-JP", viewport={"width": 1280, "height": 900})


@pytest.fixture
def english_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _context(browser, request, locale="en-US", viewport={"width": 1280, "height": 900})


@pytest.fixture
def phone_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _context(
        browser,
        request,
        locale="ja-JP",
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    )

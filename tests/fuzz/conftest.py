"""Fixtures for the contract fuzz suite: the whole local stack (as ``make run`` starts it) once per
module, the relay's own ``/openapi.json`` loaded by schemathesis, and a ledger of what was sent."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.integration.stack import Launcher

# Reproducible in CI: a fixed seed; coverage cases are derived from the document, fuzzed ones from it.
SEED = 20261127
# Every check schemathesis has (`--checks all`), with what they expect widened only where the relay's
# answer is right and the document cannot say more:
# - a body over the size limit is refused with 413 (RFC 9110 section 15.5.14) before it is parsed;
# - a page reached with a well-formed but unknown single-use reference (request_uri, the portal's
#   state, the form's CSRF token) is a 400 error page: no generated value can be a live one.
POSITIVE_DEFAULT = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
NEGATIVE_DEFAULT = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx"]
SINGLE_USE_REFERENCE_PAGES = (
    ("GET", "/authorize"),
    ("GET", "/portal/callback"),
    ("POST", "/authorize/decision"),
)
CHECKS_CONFIG: dict[str, Any] = {
    "negative_data_rejection": {"expected-statuses": [*NEGATIVE_DEFAULT, "413"]},
}
OPERATIONS_CONFIG: list[dict[str, Any]] = [
    {
        "include-path": path,
        "include-method": method,
        "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_DEFAULT, "400"]}},
    }
    for method, path in SINGLE_USE_REFERENCE_PAGES
]


@dataclass
class Ledger:
    """What the fuzz run sent: requests per operation, and how long the run took."""

    requests: Counter[str] = field(default_factory=Counter)
    calling: float = 0.0  # seconds spent sending requests and checking their answers
    started: float = 0.0
    finished: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.requests.values())


LEDGER = Ledger()


@pytest.fixture(scope="module")
def relay_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    stack = Launcher(tmp_path_factory.mktemp("fuzz-stack") / "state")
    stack.start()
    yield stack
    assert stack.process is not None
    if stack.process.poll() is None:
        stack.stop()
    else:  # the launcher died during the run; its chalice local has a process group of its own
        stack._kill_orphan(stack._recorded_relay_pid())
        pytest.fail(f"the launcher died during the fuzz run (exit {stack.process.returncode})")


@pytest.fixture(scope="module")
def relay_schema(relay_stack: Launcher) -> OpenApiSchema:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "cache": {"enabled": False},  # no .schemathesis/ directory in the work tree
            "base-url": relay_stack.api,
            "request-timeout": 10,
            # schemathesis' default phases; coverage sends every undeclared method, TRACE included
            # (chalice local answers it through scripts/chalice_local.py, like any other).
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True},  # not applicable: the document declares no links
            },
            "checks": CHECKS_CONFIG,
            "operations": OPERATIONS_CONFIG,
        }
    )
    return schemathesis.openapi.from_url(f"{relay_stack.api}/openapi.json", config=config, timeout=10)


@pytest.fixture(scope="module")
def loopback_session() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # the machine's CA and proxy settings are not for loopback
    yield session
    session.close()


@pytest.fixture(scope="module")
def ledger() -> Iterator[Ledger]:
    LEDGER.started = time.monotonic()
    yield LEDGER
    LEDGER.finished = time.monotonic()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if LEDGER.total:
        elapsed = (LEDGER.finished or time.monotonic()) - LEDGER.started
        terminalreporter.write_line(
            f"schemathesis: {LEDGER.total} requests in {elapsed:.1f} s "
            f"({LEDGER.calling:.1f} s sending them and checking the answers)"
        )


@pytest.fixture(autouse=True)
def _node_id_for_lazy_schemas(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32.5's ``from_fixture`` reads and rewrites ``Node._nodeid``, which pytest 9.2
    no longer has (AttributeError before any request is sent); it only names subtests with it."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


# The functional fixtures (sandbox portal, registered partner, resident journey) for test_findings.py.
from tests.functional.conftest import journey, partner, portal_env, sandbox  # noqa: E402, F401

"""The relay against its own ``/openapi.json``, over real HTTP: schemathesis sends every operation
documented inputs, boundary values, missing and malformed fields, wrong media types and every
undeclared method (coverage phase) and generated valid and invalid requests (fuzzing phase), and
every check schemathesis has (``st run --checks all``) holds: every answer is documented (status,
media type, body schema, required headers), none is a server error, schema-valid requests are
accepted and invalid ones refused, a missing credential is a 401, an undeclared method a 405 with
``Allow``, and so on (``tests/fuzz/conftest.py`` says where an expectation is widened, and why).

Bounded for CI: about 2,000 requests in all, derandomized, no example database.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from chalicelib.api.openapi import OPENAPI_PATH
from tests.fuzz.conftest import Ledger

pytestmark = pytest.mark.integration

load_all_checks()
# Every check schemathesis registers, as `--checks all` selects them (max_response_time needs a limit).
EVERY_CHECK = CHECKS.get_all()
# Generated (fuzzing phase) cases per operation; the coverage phase adds its own on top.
MAX_EXAMPLES = 80
# What the whole run must stay within (17 operations): enough to mean something, bounded for CI.
MIN_REQUESTS, MAX_REQUESTS = 1_500, 2_600
MIN_REQUESTS_PER_OPERATION = 40

relay = schemathesis.pytest.from_fixture("relay_schema")


@relay.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: Any, loopback_session: requests.Session, ledger: Ledger
) -> None:
    ledger.requests[f"{case.method.upper()} {case.path}"] += 1
    sent = time.monotonic()
    try:
        case.call_and_validate(session=loopback_session, checks=EVERY_CHECK)
    finally:
        ledger.finished = time.monotonic()
        ledger.calling += ledger.finished - sent


def test_the_fuzz_run_reached_every_operation_within_its_budget(relay_schema: Any, ledger: Ledger) -> None:
    # GIVEN the run above (this test reads its ledger, so it runs after it, in this module)
    assert ledger.total > 0, "run this module whole: the fuzz test above fills the ledger"
    # WHEN the operations it sent requests to are compared with the document's
    documented = {
        f"{method.upper()} {path}"
        for path, item in relay_schema.raw_schema["paths"].items()
        for method in item
        if path != OPENAPI_PATH  # schemathesis never fuzzes the operation serving the document itself
    }
    reached = {operation: ledger.requests[operation] for operation in documented}
    # THEN every documented operation got its share, and the whole run stayed within the CI budget
    assert {operation: n for operation, n in reached.items() if n < MIN_REQUESTS_PER_OPERATION} == {}
    assert MIN_REQUESTS <= ledger.total <= MAX_REQUESTS

"""The resident's pages in Chromium, served by the real app (tests/a11y/gallery.py): the functional
relay (Chalice test client, moto in-process, the sandbox portal on loopback) imported from
``tests/functional``, Debian's Chromium from ``tests/e2e``, and the demo partners of
``local/partners`` registered with test keys, one journey per purpose they declare."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.fakes import ShiftedClock
from tests.functional.conftest import Journey, clock, journey, partner, portal_env, sandbox
from tests.functional.test_authorization_refusals import registry
from tests.partner_helpers import Pkce, TestPartner

__all__ = ["clock", "demo_journeys", "journey", "partner", "portal_env", "sandbox"]

DEMO_PARTNERS = REPO_ROOT / "local" / "partners"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/a11y/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def demo_journeys(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> dict[str, Journey]:
    """``{"<partner id>/<purpose id>": journey}`` for every purpose of every demo partner: their
    names, purposes, datasets and fields as `make run` registers them, with keys of the test's own
    (the demo documents' loopback redirect URIs become https://<id>.example/callback)."""
    journeys: dict[str, Journey] = {}
    for path in sorted(DEMO_PARTNERS.glob("*.partner.json")):
        demo = json.loads(path.read_text(encoding="utf-8"))
        stand_in = TestPartner(
            client_id=demo["id"],
            redirect_uri=f"https://{demo['id']}.example/callback",
            kid=f"{demo['id']}-sig",
        )
        stand_in.clock = clock.timestamp
        registry(dynamodb_client, resources).register(
            stand_in.document(names=demo["names"], purposes=demo["purposes"])
        )
        for purpose in demo["purposes"]:
            journeys[f"{demo['id']}/{purpose['id']}"] = Journey(
                client=journey.client, partner=stand_in, sandbox=journey.sandbox, pkce=Pkce()
            )
    return journeys

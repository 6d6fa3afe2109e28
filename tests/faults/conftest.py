"""Fault-suite fixtures: the functional relay + sandbox, AWS faults on the container's clients,
retry backoff recorded instead of slept, the tables to check, and a partner webhook endpoint."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import botocore.endpoint
import pytest

from chalicelib import container
from chalicelib.adapters import mynaportal
from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
from chalicelib.domain.clock import SystemClock
from chalicelib.domain.registry import PartnerRegistry
from tests.fakes import ShiftedClock
from tests.faults.harness import AwsFaults, Tables, WebhookReceiver
from tests.functional import conftest as functional
from tests.functional.conftest import Journey

# The functional suite's fixtures: the relay, the sandbox portal on loopback, the partner, the clock.
sandbox = functional.sandbox
portal_env = functional.portal_env
partner = functional.partner
journey = functional.journey
clock = functional.clock


@dataclass
class Backoff:
    """The delays retries asked for: botocore's standard mode and the portal client's IF001-06."""

    aws: list[float] = field(default_factory=list)
    portal: list[float] = field(default_factory=list)


@pytest.fixture(autouse=True)
def backoff(monkeypatch: pytest.MonkeyPatch) -> Backoff:
    """Recorded, not slept: botocore sleeps in ``botocore.endpoint`` between attempts (random, up
    to 1 s then 2 s), the portal client sleeps through the function it is built with."""
    recorded = Backoff()
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=recorded.aws.append))
    monkeypatch.setattr(
        mynaportal,
        "MynaportalClient",
        functools.partial(mynaportal.MynaportalClient, sleep=recorded.portal.append),
    )
    return recorded


@pytest.fixture
def aws_faults(clock: ShiftedClock) -> AwsFaults:
    """Faults on the boto3 clients the relay itself uses (built by the composition root)."""
    faults = AwsFaults()
    faults.attach(container.get_container().aws)
    return faults


@pytest.fixture
def tables(dynamodb_client: Any, resources: dict[str, str]) -> Tables:
    return Tables(
        dynamodb_client,
        resources["RELAY_STATE_TABLE"],
        resources["RELAY_AUDIT_TABLE"],
        resources["RELAY_PARTNERS_TABLE"],
    )


@pytest.fixture
def receiver(journey: Journey, dynamodb_client: Any, resources: dict[str, str]) -> Iterator[WebhookReceiver]:
    """The partner registers a webhook URL served on loopback (through its own store, so that the
    relay's settings are not read before a test's fixtures set them)."""
    live = WebhookReceiver()
    store = DynamoPartnerStore(dynamodb_client, resources["RELAY_PARTNERS_TABLE"], allow_loopback=True)
    PartnerRegistry(store, SystemClock(), allow_loopback=True).update(
        journey.partner.document(webhook_url=live.url)
    )
    yield live
    live.stop()


@pytest.fixture
def short_portal_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox hangs 2 s on a timeout scenario; the relay gives up after 0.3 s. (Settings are
    read once per container: request this before anything reads them.)"""
    monkeypatch.setenv("RELAY_PORTAL_READ_TIMEOUT_S", "0.3")
    container.get_settings.cache_clear()

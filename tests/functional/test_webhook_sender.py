"""The webhook sender connects to the address it checked, with the partner's name kept for the
request (``Host``; SNI and certificate checks on https), trying the next address when one does not
connect, as the system's own connect would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib.adapters.webhooks import HttpWebhookSender
from tests.security.test_server_side_requests import Listener


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.stop()


def test_the_event_goes_to_the_checked_address_under_the_partners_name(listener: Listener) -> None:
    # GIVEN a partner name whose first address refuses connections (port 1 on loopback's ::1 or
    # 127.0.0.2 has no listener) and whose second is the partner's endpoint
    lookups: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append((host, port))
        return ["127.0.0.2", "127.0.0.1"]

    sender = HttpWebhookSender(allow_private=True, resolver=resolver, connect_timeout_s=1)
    refusing = HttpWebhookSender(allow_private=True, resolver=lambda host, port: ["127.0.0.2"])
    url = f"http://hooks.bank.example:{listener.port}/relay?partner=acme"
    # WHEN the relay sends an event
    assert sender.send(url, "e.y.s", event_id="ev-1") is True
    # THEN it reached the endpoint under the partner's name, after one lookup
    assert listener.requests == [(f"hooks.bank.example:{listener.port}", "/relay?partner=acme")]
    assert lookups == [("hooks.bank.example", listener.port)]
    # AND an address that does not connect is a failed delivery, not an exception
    assert refusing.send(url, "e.y.s", event_id="ev-2") is False


def test_a_name_that_does_not_resolve_is_a_failed_delivery() -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    sender = HttpWebhookSender(resolver=resolver)
    assert sender.send("https://hooks.bank.example/relay", "e.y.s", event_id="ev-3") is False

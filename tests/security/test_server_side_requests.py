"""Server-side request forgery through the one URL the relay calls on a partner's behalf: the
webhook (OWASP A10:2021; OWASP SSRF Prevention Cheat Sheet). On AWS, a request to 169.254.169.254
or to a private address would reach the instance metadata service or the account's own network.

Outside the local and test stages a webhook URL must name a public host at registration, and the
sender checks every address the name resolves to when it sends, then connects to a checked address
without a second lookup; redirects are never followed. The sender here runs with the rules of the
dev and prod stages (``allow_private=False``); the listeners are on loopback, so a request that got
through would be seen.
"""

from __future__ import annotations

import io
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from chalicelib import container
from chalicelib.adapters.webhooks import HttpWebhookSender
from chalicelib.domain.errors import InvalidPartnerDocument
from chalicelib.domain.registry import PartnerRegistry
from chalicelib.telemetry import logger

PRIVATE_WEBHOOKS = (
    "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "https://[fd00:ec2::254]/latest/api/token",
    "https://10.0.12.7/hooks",
    "https://[::ffff:127.0.0.1]/hooks",
    "https://127.1/hooks",
    "https://0x7f.0.0.1/hooks",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://localhost/hooks",
    "https://intranet/hooks",
)


class Listener:
    """An HTTP server on loopback that records what reaches it and answers ``status``."""

    def __init__(
        self, status: int = 204, location: str | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.requests: list[tuple[str, str]] = []

        @Request.application
        def app(request: Request) -> Response:
            self.requests.append((request.host, request.full_path))
            headers = {"Location": location} if location else {}
            return Response("", status=status, headers=headers)

        self.server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=ssl_context)
        self.port = self.server.server_port
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.stop()


@pytest.fixture
def relay_log() -> Iterator[io.StringIO]:
    captured = io.StringIO()
    previous = logger.registered_handler.setStream(captured)
    yield captured
    logger.registered_handler.setStream(previous)


@pytest.mark.attack(
    source="OWASP A10:2021 (SSRF)",
    threat="a webhook URL naming the metadata service, a private or loopback host, or an IP in legacy notation",
)
def test_a_webhook_url_on_a_private_host_is_refused_at_registration_outside_local_and_test(
    client: Any, partner_document: Any
) -> None:
    services = container.get_container()
    registry = PartnerRegistry(services.partner_store, services.clock, allow_loopback=False)
    before = sorted(record.partner.id for record in registry.list())
    for url in PRIVATE_WEBHOOKS:
        # WHEN an operator registers a partner whose webhook is on a host the relay must not call
        with pytest.raises(InvalidPartnerDocument) as refused:
            registry.register(partner_document(webhook_url=url))
        # THEN the registration is refused, naming the field and why
        assert refused.value.check == "webhook_url", url
        assert "must reach the public internet" in refused.value.detail, url
    # AND nothing was stored
    assert sorted(record.partner.id for record in registry.list()) == before
    # AND a public name is accepted (what it resolves to is checked when sending)
    assert registry.parse(partner_document(webhook_url="https://hooks.bank.example/relay")).webhook_url


@pytest.mark.attack(
    source="OWASP SSRF Prevention Cheat Sheet (DNS rebinding)",
    threat="a registered public webhook name that resolves to a private address when the event is sent",
)
def test_a_webhook_name_resolving_to_a_private_address_gets_no_request(
    listener: Listener, relay_log: io.StringIO
) -> None:
    # GIVEN a webhook name that now resolves to loopback (where a listener would see any request),
    # or to a public address and a private one
    for addresses in (["127.0.0.1"], ["198.51.100.7", "127.0.0.1"], ["::ffff:127.0.0.1"]):
        resolved: list[str] = []

        def resolver(
            host: str, port: int, addresses: list[str] = addresses, resolved: list[str] = resolved
        ) -> list[str]:
            resolved.append(host)
            return addresses

        sender = HttpWebhookSender(allow_private=False, resolver=resolver, connect_timeout_s=0.5)
        # WHEN the relay sends an event there
        sent = sender.send(f"http://hooks.bank.example:{listener.port}/relay", "e.y.s", event_id="ev-1")
        # THEN it is not sent, nothing reached the listener, and the name was looked up once
        assert sent is False
        assert listener.requests == []
        assert resolved == ["hooks.bank.example"]
    # AND the log says why, for the operator's alarm
    assert relay_log.getvalue().count('"reason":"address_not_public"') == 3


@pytest.mark.attack(
    source="OWASP SSRF Prevention Cheat Sheet (redirects)",
    threat="a partner's webhook endpoint answering with a redirect to an internal address",
)
def test_a_webhook_redirect_is_never_followed(listener: Listener) -> None:
    # GIVEN a partner endpoint that redirects to another host (the listener stands for it)
    redirecting = Listener(status=307, location=f"http://127.0.0.1:{listener.port}/latest/meta-data/")
    try:
        sender = HttpWebhookSender(allow_private=True, connect_timeout_s=0.5)
        # WHEN the relay sends an event
        sent = sender.send(f"http://127.0.0.1:{redirecting.port}/relay", "e.y.s", event_id="ev-2")
        # THEN the redirect counts as a failed delivery and its target got nothing
        assert sent is False
        assert len(redirecting.requests) == 1
        assert listener.requests == []
    finally:
        redirecting.stop()


def _wrapped_metadata(address: str, case_id: str, form: str, source: str) -> Any:
    return pytest.param(
        address,
        id=case_id,
        marks=pytest.mark.attack(
            source=source, threat=f"a webhook address in {form} form wrapping 169.254.169.254"
        ),
    )


@pytest.mark.parametrize(
    "address",
    [
        _wrapped_metadata(
            "64:ff9b::a9fe:a9fe", "nat64", "NAT64 (64:ff9b::/96)", "RFC 6052 / OWASP A10:2021 (SSRF)"
        ),
        _wrapped_metadata(
            "64:ff9b:1:a9fe:a9:fe00::",
            "nat64-local-use",
            "local-use NAT64 (64:ff9b:1::/48)",
            "RFC 8215 / OWASP A10:2021 (SSRF)",
        ),
        _wrapped_metadata(
            "::a9fe:a9fe",
            "ipv4-compatible",
            "IPv4-compatible (::/96)",
            "RFC 4291 §2.5.5.1 / OWASP A10:2021 (SSRF)",
        ),
        _wrapped_metadata(
            "::ffff:0:a9fe:a9fe",
            "ipv4-translated",
            "IPv4-translated (::ffff:0:0:0/96)",
            "RFC 2765 / OWASP A10:2021 (SSRF)",
        ),
        _wrapped_metadata(
            "2002:a9fe:a9fe::1", "6to4", "6to4 (2002::/16)", "RFC 3056 / OWASP A10:2021 (SSRF)"
        ),
        _wrapped_metadata(
            "2001:0:4136:e378:8000:63bf:5601:5601",
            "teredo",
            "Teredo (2001::/32)",
            "RFC 4380 / OWASP A10:2021 (SSRF)",
        ),
        _wrapped_metadata(
            "2600:1f18::5efe:a9fe:a9fe", "isatap", "ISATAP", "RFC 5214 / OWASP A10:2021 (SSRF)"
        ),
    ],
)
def test_the_metadata_service_wrapped_in_ipv6_is_neither_registered_nor_called(
    client: Any, partner_document: Any, relay_log: io.StringIO, address: str
) -> None:
    services = container.get_container()
    registry = PartnerRegistry(services.partner_store, services.clock, allow_loopback=False)
    before = sorted(record.partner.id for record in registry.list())
    # WHEN an operator registers a webhook on that IPv6 literal
    with pytest.raises(InvalidPartnerDocument) as refused:
        registry.register(partner_document(webhook_url=f"https://[{address}]/latest/meta-data/"))
    # THEN it is refused, naming the field and why, and nothing is stored
    assert refused.value.check == "webhook_url"
    assert "must reach the public internet" in refused.value.detail
    assert sorted(record.partner.id for record in registry.list()) == before
    # WHEN a registered public name resolves to that address when an event is sent
    sender = HttpWebhookSender(
        allow_private=False, resolver=lambda host, port: [address], connect_timeout_s=0.2
    )
    sent = sender.send("https://hooks.bank.example/relay", "e.y.s", event_id="ev-3")
    # THEN no connection is tried: the address is refused as not public, for the operator's alarm
    assert sent is False
    assert '"reason":"address_not_public"' in relay_log.getvalue()

"""The webhook sender connects to the address it checked, with the partner's name kept for the
request (``Host``; SNI and certificate checks on https), trying the next address when one does not
connect, as the system's own connect would."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chalicelib.adapters.webhooks import HttpWebhookSender
from sandbox.tls import make_certificate_authority
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


# -- https: the checked address, the partner's name for SNI and the certificate ----------------------


def tls_receiver(tmp_path: Path, name: str) -> tuple[Listener, Path, list[str | None]]:
    """A webhook receiver on loopback over TLS, its certificate for ``name`` issued by a fresh CA;
    (receiver, CA bundle, the SNI names it was asked for)."""
    ca_cert, ca_key = make_certificate_authority("webhook test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    server_names: list[str | None] = []
    context.sni_callback = lambda _socket, server_name, _context: server_names.append(server_name)
    return Listener(ssl_context=context), tmp_path / "ca.pem", server_names


def test_over_https_the_partners_name_is_the_sni_and_the_certificate_checked(tmp_path: Path) -> None:
    # GIVEN a partner's https endpoint whose name resolves to loopback, with a certificate for it
    receiver, ca, server_names = tls_receiver(tmp_path, "hooks.bank.example")
    try:
        sender = HttpWebhookSender(
            allow_private=True, resolver=lambda host, port: ["127.0.0.1"], ca_certs=str(ca)
        )
        url = f"https://hooks.bank.example:{receiver.port}/relay"
        # WHEN the relay sends an event
        assert sender.send(url, "e.y.s", event_id="ev-4") is True
        # THEN the connection went to the checked address, asking for and verifying the name
        assert server_names == ["hooks.bank.example"]
        assert receiver.requests == [(f"hooks.bank.example:{receiver.port}", "/relay?")]
        # AND a name the certificate does not carry is refused (a failed delivery, nothing sent)
        elsewhere = f"https://hooks.other.example:{receiver.port}/relay"
        assert sender.send(elsewhere, "e.y.s", event_id="ev-5") is False
        assert len(receiver.requests) == 1
    finally:
        receiver.stop()

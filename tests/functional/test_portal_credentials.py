"""The portal's mTLS credentials from Secrets Manager (moto, in-process) against the sandbox's ``sp``
host over mutual TLS on loopback: a good secret gives the relay's client a working mutual-TLS
connection; a wrong one is refused by name without its text reaching an error or a log; the secret
is read once per container; the key goes through memory (memfd) or a private directory removed at
once."""

from __future__ import annotations

import json
import logging
import os
import ssl
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chalicelib import container
from chalicelib.adapters import mynaportal_inferred as inferred
from chalicelib.adapters.mynaportal import MynaportalClient, PortalClientConfig, PortalEndpoints
from chalicelib.adapters.portal_credentials import (
    PortalCredentialsDocument,
    SecretsManagerPortalCredentials,
    build_ssl_context,
)
from chalicelib.domain.errors import DependencyUnavailable
from chalicelib.domain.portal import PortalToken, PortalUnavailable
from sandbox.portal import ConsentPage, Redirect, SignInPage
from sandbox.server import SandboxServer
from sandbox.tls import issue_client_certificate, make_certificate_authority
from tests.conftest import REGION
from tests.functional.conftest import CALLBACK

CLIENT_ID = "SP00000001_AA0001"  # the relay's local_tax service in local/sandbox-services.json
SECRET_NAME = "myna-relay/test/portal-mtls"
GET_SECRET_VALUE = "before-parameter-build.secrets-manager.GetSecretValue"


# -- fixtures -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """The sandbox's test PKI as the secret's JSON members, and a foreign CA for the wrong cases."""

    certificate: str
    private_key: str
    ca_bundle: str
    foreign_dir: Path

    def document(self, **overrides: Any) -> dict[str, Any]:
        document: dict[str, Any] = {
            "certificate": self.certificate,
            "private_key": self.private_key,
            "ca_bundle": self.ca_bundle,
        }
        document.update(overrides)
        return {name: value for name, value in document.items() if value is not None}

    def key_lines(self) -> list[str]:
        """The base64 lines of the client key: none may ever appear in an error or a log."""
        return [line for line in self.private_key.splitlines() if line and "-----" not in line]


@pytest.fixture
def pki(sandbox: SandboxServer, tmp_path: Path) -> Pki:
    assert sandbox.tls is not None
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    return Pki(
        certificate=sandbox.tls.client_cert.read_text(encoding="ascii"),
        private_key=sandbox.tls.client_key.read_text(encoding="ascii"),
        ca_bundle=sandbox.tls.ca_cert.read_text(encoding="ascii"),
        foreign_dir=foreign,
    )


@pytest.fixture
def secrets_client(aws: None) -> Any:
    return boto3.client("secretsmanager", region_name=REGION)


@pytest.fixture
def store_secret(secrets_client: Any) -> Callable[[Any], str]:
    """Stores a document (JSON-encoded unless it is text already) as a new secret; returns its ARN."""
    count = iter(range(1, 1000))

    def store(document: Any) -> str:
        text = document if isinstance(document, str) else json.dumps(document)
        answer = secrets_client.create_secret(Name=f"{SECRET_NAME}-{next(count)}", SecretString=text)
        return str(answer["ARN"])

    return store


@pytest.fixture
def relay_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record of the relay's logger and of the root logger while the test runs."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    loggers = [logging.getLogger("myna-relay"), logging.getLogger()]
    for logger in loggers:
        logger.addHandler(handler)
    yield records
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's directory for the test, empty: whatever the adapter writes there is visible."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``load_cert_chain`` was given: the paths, and the mode of each file and its directory."""
    seen: list[dict[str, Any]] = []
    original = ssl.SSLContext.load_cert_chain

    def recording(self: ssl.SSLContext, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        paths = [str(certfile), str(keyfile)]
        seen.append(
            {
                "paths": paths,
                "modes": [stat.S_IMODE(os.stat(path).st_mode) for path in paths],
                "dir_modes": [stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) for path in paths],
            }
        )
        original(self, certfile, keyfile, password)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", recording)
    return seen


def portal_code(server: SandboxServer) -> str:
    """What the resident's browser does at the sandbox (IF001-01, sign-in, IF001-02)."""
    page = server.portal.authorize(
        {
            "response_type": ["code"],
            "client_id": [CLIENT_ID],
            "redirect_uri": [CALLBACK],
            "state": ["s-1"],
            "login_type": [inferred.LOGIN_TYPE],
        }
    )
    assert isinstance(page, SignInPage)
    assert isinstance(server.portal.sign_in(page.session_id, "salaried", "1234"), ConsentPage)
    done = server.portal.consent(page.session_id, agree=True)
    assert isinstance(done, Redirect)
    return parse_qs(urlsplit(done.url).query)["code"][0]


def client_with(server: SandboxServer, context: ssl.SSLContext) -> MynaportalClient:
    config = PortalClientConfig(
        PortalEndpoints(**server.endpoints()), None, None, None, ssl_context=context, result_attempts=1
    )
    return MynaportalClient(config, sleep=lambda _: None)


def exchange(server: SandboxServer, client: MynaportalClient) -> PortalToken:
    return client.exchange_code(client_id=CLIENT_ID, code=portal_code(server), redirect_uri=CALLBACK)


def everything_said(error: BaseException, records: list[logging.LogRecord]) -> str:
    """The error (its chain included) and every log record, as an operator could ever see them."""
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen), repr(seen.args), repr(vars(seen))]
        seen = seen.__cause__ or seen.__context__
    for record in records:
        parts += [record.getMessage(), repr(vars(record))]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


# -- (a) a good secret: mutual TLS with the sandbox's sp host -------------------------------------------


def test_a_secret_with_the_sandbox_credentials_gives_the_client_a_mutual_tls_call_to_the_sp_host(
    sandbox: SandboxServer, pki: Pki, store_secret: Callable[[Any], str], secrets_client: Any
) -> None:
    # GIVEN a secret holding the sandbox's client certificate, its key and the sandbox's CA
    arn = store_secret(pki.document())
    credentials = SecretsManagerPortalCredentials(secrets_client, arn)
    # WHEN the relay's portal client is built on the context read from it and spends a code
    client = client_with(sandbox, credentials.ssl_context())
    token = exchange(sandbox, client)
    # THEN the sandbox, which requires a client certificate from its CA, answered with a token
    assert token.access_token
    # AND IF001-04 over the same pool works too
    process = client.start_request(
        client_id=CLIENT_ID,
        access_token=token.access_token,
        inquiry_date=sandbox.portal.clock.now().date(),
        now=sandbox.portal.clock.now(),
    )
    assert process.process_id


def test_the_secret_works_through_the_container_and_its_text_is_not_kept(
    sandbox: SandboxServer,
    pki: Pki,
    store_secret: Callable[[Any], str],
    resources: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the test stage configured with the sandbox's endpoints and only a secret id
    for name, value in {
        "RELAY_PORTAL_AUTHORIZE_URL": sandbox.endpoints()["authorize_url"],
        "RELAY_PORTAL_TOKEN_URL": sandbox.endpoints()["token_url"],
        "RELAY_PORTAL_REQUEST_URL": sandbox.endpoints()["request_url"],
        "RELAY_PORTAL_RESULT_URL": sandbox.endpoints()["result_url"],
        "RELAY_PORTAL_CLIENT_SECRET_ID": store_secret(pki.document()),
    }.items():
        monkeypatch.setenv(name, value)
    relay = container.get_container()
    # WHEN the container's portal client spends a code
    token = exchange(sandbox, relay.portal)
    # THEN the mutual-TLS call succeeded
    assert token.access_token
    # AND the credentials object keeps the context only, not the secret's text nor the key
    assert relay.portal_credentials is not None
    kept = repr(vars(relay.portal_credentials))
    assert "PRIVATE KEY" not in kept
    assert not any(line in kept for line in pki.key_lines())


def test_a_secret_without_a_ca_bundle_trusts_the_system_and_so_refuses_the_sandbox(
    sandbox: SandboxServer, pki: Pki, store_secret: Callable[[Any], str], secrets_client: Any
) -> None:
    # GIVEN a secret without ca_bundle (the system's trust, which does not hold the sandbox's test CA)
    arn = store_secret(pki.document(ca_bundle=None))
    client = client_with(sandbox, SecretsManagerPortalCredentials(secrets_client, arn).ssl_context())
    # WHEN the client calls the sandbox
    # THEN the sandbox's server certificate is not trusted: no call is made
    with pytest.raises(PortalUnavailable, match="SSLError"):
        exchange(sandbox, client)


def test_a_client_certificate_from_another_ca_is_refused_by_the_sandbox(
    sandbox: SandboxServer, pki: Pki, store_secret: Callable[[Any], str], secrets_client: Any
) -> None:
    # GIVEN a well-formed secret whose client certificate the sandbox's CA did not issue
    cert_path, key_path = issue_client_certificate(
        pki.foreign_dir, "foreign", "SP00000001", make_certificate_authority("foreign CA")
    )
    arn = store_secret(
        pki.document(
            certificate=cert_path.read_text(encoding="ascii"),
            private_key=key_path.read_text(encoding="ascii"),
        )
    )
    client = client_with(sandbox, SecretsManagerPortalCredentials(secrets_client, arn).ssl_context())
    # WHEN the client calls the sandbox
    # THEN the handshake fails: the sandbox really checks the client certificate we present
    with pytest.raises(PortalUnavailable):
        exchange(sandbox, client)


def test_the_key_goes_through_anonymous_memory_files_and_never_to_disk(
    sandbox: SandboxServer,
    pki: Pki,
    store_secret: Callable[[Any], str],
    secrets_client: Any,
    private_tempdir: Path,
    loads: list[dict[str, Any]],
) -> None:
    # GIVEN a good secret on a Linux with memfd_create
    arn = store_secret(pki.document())
    # WHEN the context is built
    SecretsManagerPortalCredentials(secrets_client, arn).ssl_context()
    # THEN OpenSSL read the certificate and key from /proc/self/fd (memfd), and nothing was written
    # to the temporary directory
    assert len(loads) == 1
    assert all(path.startswith("/proc/self/fd/") for path in loads[0]["paths"])
    assert list(private_tempdir.iterdir()) == []


def test_without_memfd_the_key_goes_through_a_private_directory_removed_at_once(
    sandbox: SandboxServer,
    pki: Pki,
    store_secret: Callable[[Any], str],
    secrets_client: Any,
    private_tempdir: Path,
    loads: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a platform without memfd_create
    monkeypatch.delattr(os, "memfd_create")
    arn = store_secret(pki.document())
    # WHEN the context is built and used
    client = client_with(sandbox, SecretsManagerPortalCredentials(secrets_client, arn).ssl_context())
    assert exchange(sandbox, client).access_token
    # THEN OpenSSL read 0600 files in a 0700 directory under the temporary directory
    assert len(loads) == 1
    assert all(Path(path).parent.parent == private_tempdir for path in loads[0]["paths"])
    assert loads[0]["modes"] == [0o600, 0o600]
    assert loads[0]["dir_modes"] == [0o700, 0o700]
    # AND that directory is gone
    assert list(private_tempdir.iterdir()) == []


# -- (b) wrong secrets: refused by name, their text in no error and no log ------------------------------


def encrypted_key(pki: Pki, encoding: serialization.PrivateFormat) -> str:
    key = serialization.load_pem_private_key(pki.private_key.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, encoding, serialization.BestAvailableEncryption(b"passphrase-1")
    ).decode()


def another_key() -> str:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


WRONG_SECRETS: dict[str, tuple[Callable[[Pki], Any], str, str]] = {
    # name: (the secret, the check named, a word of the reason)
    "missing private key": (
        lambda pki: pki.document(private_key=None),
        "portal_credentials.private_key",
        "Field required",
    ),
    "certificate not PEM": (
        lambda pki: pki.document(certificate="MIIBnotpem-but-base64ish-text-4f1c"),
        "portal_credentials.certificate",
        "no PEM block",
    ),
    "private key not PEM": (
        lambda pki: pki.document(private_key="\n".join(pki.key_lines())),
        "portal_credentials.private_key",
        "no PEM block",
    ),
    "PKCS#8 encrypted key": (
        lambda pki: pki.document(private_key=encrypted_key(pki, serialization.PrivateFormat.PKCS8)),
        "portal_credentials.private_key",
        "encrypted",
    ),
    "legacy encrypted key": (
        lambda pki: pki.document(
            private_key=encrypted_key(pki, serialization.PrivateFormat.TraditionalOpenSSL)
        ),
        "portal_credentials.private_key",
        "encrypted",
    ),
    "extra field": (
        lambda pki: pki.document(passphrase="s3cret-passphrase-4f1c"),
        "portal_credentials.passphrase",
        "not an expected field",
    ),
    "key in the certificate field": (
        lambda pki: pki.document(certificate=pki.certificate + pki.private_key),
        "portal_credentials.certificate",
        "private key",
    ),
    "key of another certificate": (
        lambda pki: pki.document(private_key=another_key()),
        "portal_credentials.private_key",
        "does not belong",
    ),
    "truncated key": (
        lambda pki: pki.document(private_key=pki.private_key.replace(pki.key_lines()[1], "")),
        "portal_credentials.private_key",
        "not a readable",
    ),
    "not JSON": (
        lambda pki: pki.certificate + pki.private_key,
        "portal_credentials",
        "Invalid JSON",
    ),
    "a JSON list": (
        lambda pki: [pki.certificate, pki.private_key],
        "portal_credentials",
        "should be an object",
    ),
}


@pytest.mark.parametrize("case", WRONG_SECRETS)
def test_a_wrong_secret_is_refused_by_name_without_its_text(
    case: str,
    pki: Pki,
    store_secret: Callable[[Any], str],
    secrets_client: Any,
    relay_logs: list[logging.LogRecord],
) -> None:
    make, check, reason = WRONG_SECRETS[case]
    # GIVEN a secret that is wrong in one way
    secret = make(pki)
    arn = store_secret(secret)
    # WHEN the portal's context is built from it
    with pytest.raises(DependencyUnavailable) as refused:
        SecretsManagerPortalCredentials(secrets_client, arn).ssl_context()
    # THEN the refusal names the failed check and why
    assert refused.value.check == check
    assert reason in refused.value.detail
    # AND neither the error (with its chain) nor any log holds the secret or a line of the key
    said = everything_said(refused.value, relay_logs)
    assert "PRIVATE KEY" not in said
    assert not any(line in said for line in pki.key_lines())
    assert "4f1c" not in said
    # AND no frame of the relay's code in its traceback still holds the secret's text
    held = []
    frames = refused.tb
    while frames is not None:
        if "chalicelib" in frames.tb_frame.f_code.co_filename:
            held += [repr(value) for value in frames.tb_frame.f_locals.values()]
        frames = frames.tb_next
    assert held
    assert not any("PRIVATE KEY" in value or "4f1c" in value for value in held)


def test_a_secret_missing_in_secrets_manager_is_refused_naming_the_service(
    secrets_client: Any, relay_logs: list[logging.LogRecord]
) -> None:
    # GIVEN a secret id that names no secret
    credentials = SecretsManagerPortalCredentials(secrets_client, f"{SECRET_NAME}-missing")
    # WHEN the context is built
    with pytest.raises(DependencyUnavailable) as refused:
        credentials.ssl_context()
    # THEN the refusal names Secrets Manager and its error code, not a portal failure
    assert refused.value.check == "secretsmanager"
    assert refused.value.detail == "secretsmanager GetSecretValue failed: ResourceNotFoundException"


def test_a_binary_secret_is_refused_by_name(
    secrets_client: Any, pki: Pki, relay_logs: list[logging.LogRecord]
) -> None:
    # GIVEN a secret stored as SecretBinary (the key in DER, say)
    arn = secrets_client.create_secret(Name=f"{SECRET_NAME}-binary", SecretBinary=pki.private_key.encode())[
        "ARN"
    ]
    # WHEN the context is built
    with pytest.raises(DependencyUnavailable) as refused:
        SecretsManagerPortalCredentials(secrets_client, arn).ssl_context()
    # THEN it is refused by name, without its bytes
    assert refused.value.check == "portal_credentials"
    assert "SecretString" in refused.value.detail
    assert "PRIVATE KEY" not in everything_said(refused.value, relay_logs)


def test_openssl_is_never_left_to_prompt_for_a_key_password(pki: Pki) -> None:
    # GIVEN an encrypted key that went past the document's checks (built without validation)
    document = PortalCredentialsDocument.model_construct(
        certificate=pki.certificate,
        private_key=encrypted_key(pki, serialization.PrivateFormat.TraditionalOpenSSL),
        ca_bundle=pki.ca_bundle,
    )
    # WHEN the context is built
    # THEN OpenSSL's request for a password is refused by name instead of prompting on a terminal
    with pytest.raises(DependencyUnavailable, match="encrypted") as refused:
        build_ssl_context(document)
    assert refused.value.check == "portal_credentials.private_key"


def test_the_document_never_shows_its_values() -> None:
    # GIVEN a document's repr
    shown = repr(PortalCredentialsDocument.model_construct(certificate="C", private_key="KEYTEXT"))
    # THEN no value is in it
    assert "KEYTEXT" not in shown


def test_an_expired_client_certificate_is_refused(
    pki: Pki, store_secret: Callable[[Any], str], secrets_client: Any
) -> None:
    # GIVEN a secret whose certificate expired (re-signed by a throwaway CA with past dates)
    key = serialization.load_pem_private_key(pki.private_key.encode(), password=None)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SP00000001")])
    now = datetime.now(UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=60))
        .not_valid_after(now - timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    arn = store_secret(pki.document(certificate=expired.public_bytes(serialization.Encoding.PEM).decode()))
    # WHEN the context is built
    with pytest.raises(DependencyUnavailable, match="expired") as refused:
        SecretsManagerPortalCredentials(secrets_client, arn).ssl_context()
    # THEN the certificate is named
    assert refused.value.check == "portal_credentials.certificate"


# -- the client's configuration: a context or paths, and only a verifying context ---------------------


def test_a_context_and_pem_paths_together_are_refused(sandbox: SandboxServer) -> None:
    assert sandbox.tls is not None
    # GIVEN both a context and the PEM paths
    # WHEN the client's configuration is made
    # THEN it is refused
    with pytest.raises(ValueError, match="ssl_context replaces client_cert"):
        PortalClientConfig(
            PortalEndpoints(**sandbox.endpoints()),
            str(sandbox.tls.client_cert),
            str(sandbox.tls.client_key),
            None,
            ssl_context=ssl.create_default_context(),
        )


def test_a_context_that_does_not_verify_the_portal_is_refused(sandbox: SandboxServer) -> None:
    # GIVEN a context that checks neither the portal's certificate nor its name
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    # WHEN the client's configuration is made
    # THEN it is refused
    with pytest.raises(ValueError, match="must verify the portal"):
        PortalClientConfig(PortalEndpoints(**sandbox.endpoints()), None, None, None, ssl_context=lax)


# -- (d) once per container --------------------------------------------------------------------------


@pytest.fixture
def relay_with_secret(
    sandbox: SandboxServer, resources: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], container.Container]:
    def configure(secret_id: str) -> container.Container:
        for name, value in {
            "RELAY_PORTAL_AUTHORIZE_URL": sandbox.endpoints()["authorize_url"],
            "RELAY_PORTAL_TOKEN_URL": sandbox.endpoints()["token_url"],
            "RELAY_PORTAL_REQUEST_URL": sandbox.endpoints()["request_url"],
            "RELAY_PORTAL_RESULT_URL": sandbox.endpoints()["result_url"],
            "RELAY_PORTAL_CLIENT_SECRET_ID": secret_id,
        }.items():
            monkeypatch.setenv(name, value)
        return container.get_container()

    return configure


def count_secret_reads(relay: container.Container) -> list[str]:
    """Each GetSecretValue the container's Secrets Manager client sends."""
    calls: list[str] = []
    relay.aws.secretsmanager.meta.events.register(
        GET_SECRET_VALUE, lambda params, **_: calls.append(params["SecretId"])
    )
    return calls


def test_the_secret_is_read_once_per_container(
    sandbox: SandboxServer,
    pki: Pki,
    store_secret: Callable[[Any], str],
    relay_with_secret: Callable[[str], container.Container],
) -> None:
    # GIVEN a container configured with a secret, Secrets Manager calls counted
    arn = store_secret(pki.document())
    relay = relay_with_secret(arn)
    reads = count_secret_reads(relay)
    # WHEN nothing needs the portal yet
    assert reads == []
    # AND THEN three portal calls are made through the container, the composition root asked each time
    for _ in range(3):
        assert exchange(sandbox, container.get_container().portal).access_token
    # THEN the secret was read exactly once
    assert reads == [arn]


def test_a_failed_read_is_not_kept_and_the_next_portal_call_reads_again(
    sandbox: SandboxServer,
    pki: Pki,
    secrets_client: Any,
    relay_with_secret: Callable[[str], container.Container],
) -> None:
    # GIVEN a container whose secret does not exist yet: building its portal client reads nothing
    relay = relay_with_secret(SECRET_NAME)
    reads = count_secret_reads(relay)
    portal = relay.portal
    assert reads == []
    # WHEN a portal call is made, it is the portal being unavailable, naming the failed check
    with pytest.raises(PortalUnavailable, match="portal credentials are unavailable") as refused:
        exchange(sandbox, portal)
    assert refused.value.check == "portal_credentials"
    # WHEN the secret is created and the portal is called again
    secrets_client.create_secret(Name=SECRET_NAME, SecretString=json.dumps(pki.document()))
    token = exchange(sandbox, portal)
    # THEN that call read it and worked, and later ones do not read it again
    assert token.access_token
    assert exchange(sandbox, portal).access_token
    assert reads == [SECRET_NAME, SECRET_NAME]

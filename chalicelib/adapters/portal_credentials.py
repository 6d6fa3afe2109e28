"""The portal's mutual-TLS client credentials, read from AWS Secrets Manager into an ``SSLContext``.

In AWS the client certificate and key that the portal's ``sp`` host requires never ship in the
package or sit beside it: one secret, named by ``RELAY_PORTAL_CLIENT_SECRET_ID``, holds them as JSON

    {"certificate": "<PEM chain, ours first>", "private_key": "<PEM>", "ca_bundle": "<PEM, optional>"}

It is read once per container (GetSecretValue), checked (only these keys; PEM markers; a readable,
unencrypted key that belongs to the first certificate; a certificate not yet expired), and loaded
into an ``ssl.SSLContext``: TLS >= 1.2, the portal's certificate and host name verified against
``ca_bundle`` or, without one, the system's trust.

``SSLContext.load_cert_chain`` reads only files. The PEM goes through anonymous in-memory files
(``memfd_create``, opened by OpenSSL as ``/proc/self/fd/N``: nothing reaches a disk) or, where those
are missing, through 0600 files in a private 0700 directory that is removed right after loading.

It must never: log the secret or any part of it; put it into an exception, or chain one that holds
it (pydantic's ``ValidationError`` echoes its input, so it is never raised or chained, and a frame
that holds the secret's text lets go of it before raising, so a traceback does not keep it); keep
the secret's text or the key after the context holds them; accept an encrypted key (OpenSSL would
prompt for its password on a terminal).
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import tempfile
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from chalicelib.adapters.aws import unavailable
from chalicelib.domain.errors import DependencyUnavailable
from chalicelib.telemetry import logger

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

CHECK: Final = "portal_credentials"
SERVICE: Final = "secretsmanager"
# Secrets Manager stores at most 65,536 bytes; anything longer is not one of our secrets.
MAX_SECRET_CHARS: Final = 65_536
KEY_LABELS: Final = frozenset({"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"})

_PEM_BLOCK: Final = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_PEM_MARKER: Final = re.compile(r"-----(?:BEGIN|END) ")
_LEGACY_ENCRYPTION: Final = re.compile(r"^Proc-Type:\s*4,\s*ENCRYPTED", re.MULTILINE)
# An unexpected key of the secret is named in the error only when it looks like a field name.
_FIELD_NAME: Final = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_ENCRYPTED = "is encrypted; store the key unencrypted (the secret is what protects it)"


# -- the secret's document --------------------------------------------------------------------------


def _pem_blocks(value: str) -> list[tuple[str, str]]:
    """(label, block) of each PEM block; ValueError when there is none or one is left open."""
    if not value.isascii():
        raise ValueError("is not PEM text (non-ASCII characters)")
    blocks = [(match.group(1), match.group(0)) for match in _PEM_BLOCK.finditer(value)]
    if not blocks:
        raise ValueError("holds no PEM block (-----BEGIN ...-----)")
    if len(_PEM_MARKER.findall(value)) != 2 * len(blocks):
        raise ValueError("holds an unterminated or nested PEM block")
    return blocks


def _certificates_only(value: str) -> str:
    labels = {label for label, _ in _pem_blocks(value)}
    if any("PRIVATE KEY" in label for label in labels):
        raise ValueError("holds a private key; only certificates belong here")
    if labels != {"CERTIFICATE"}:
        raise ValueError("holds a PEM block other than CERTIFICATE")
    try:
        x509.load_pem_x509_certificates(value.encode("ascii"))
    except ValueError:
        raise ValueError("is not a readable PEM certificate") from None
    return value


class PortalCredentialsDocument(BaseModel):
    """The secret's JSON. ``repr`` and validation errors never show a value."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    certificate: StrictStr = Field(repr=False, max_length=MAX_SECRET_CHARS)
    private_key: StrictStr = Field(repr=False, max_length=MAX_SECRET_CHARS)
    ca_bundle: StrictStr | None = Field(default=None, repr=False, max_length=MAX_SECRET_CHARS)

    @field_validator("ca_bundle", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("certificate")
    @classmethod
    def _certificate_chain(cls, value: str) -> str:
        return _certificates_only(value)

    @field_validator("ca_bundle")
    @classmethod
    def _trusted_certificates(cls, value: str | None) -> str | None:
        return None if value is None else _certificates_only(value)

    @field_validator("private_key")
    @classmethod
    def _one_unencrypted_key(cls, value: str) -> str:
        blocks = _pem_blocks(value)
        if len(blocks) != 1:
            raise ValueError("must hold exactly one PEM block")
        label, block = blocks[0]
        if label == "ENCRYPTED PRIVATE KEY" or _LEGACY_ENCRYPTION.search(block):
            raise ValueError(_ENCRYPTED)  # PKCS#8 encrypted, or OpenSSL's legacy PEM encryption
        if label not in KEY_LABELS:
            raise ValueError("is not a PEM private key (-----BEGIN PRIVATE KEY-----)")
        try:
            serialization.load_pem_private_key(value.encode("ascii"), password=None)
        except TypeError:  # cryptography: "Password was not given but private key is encrypted"
            raise ValueError(_ENCRYPTED) from None
        except (ValueError, UnsupportedAlgorithm):
            raise ValueError("is not a readable PEM private key") from None
        return value


def parse_secret(text: str) -> PortalCredentialsDocument:
    """The checked document, or ``DependencyUnavailable`` naming the failed check (never a value)."""
    failure: DependencyUnavailable | None = None
    if len(text) > MAX_SECRET_CHARS:
        failure = _refused(CHECK, f"is longer than {MAX_SECRET_CHARS} characters")
    else:
        try:
            document = PortalCredentialsDocument.model_validate_json(text)
        except ValidationError as exc:
            failure = _named(exc)
        else:
            failure = _pair_failure(document)
            if failure is None:
                return document
            del document
    # Raised outside the handler, after letting go of the text: a traceback keeps this frame's
    # locals, and a chained ValidationError would carry the secret as its input.
    del text
    raise failure


def _named(exc: ValidationError) -> DependencyUnavailable:
    first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    where = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "extra_forbidden":
        shown = where if _FIELD_NAME.fullmatch(where) else "(unnamed field)"
        return _refused(f"{CHECK}.{shown}", "is not an expected field (certificate, private_key, ca_bundle)")
    reason = str(first["msg"]).removeprefix("Value error, ")
    return _refused(f"{CHECK}.{where}" if where else CHECK, reason)


def _pair_failure(document: PortalCredentialsDocument) -> DependencyUnavailable | None:
    """The key must belong to the first certificate (ours), and that certificate must be valid now."""
    ours = x509.load_pem_x509_certificates(document.certificate.encode("ascii"))[0]
    key = serialization.load_pem_private_key(document.private_key.encode("ascii"), password=None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    matches = key.public_key().public_bytes(*spki) == ours.public_key().public_bytes(*spki)
    del key
    if not matches:
        return _refused(f"{CHECK}.private_key", "does not belong to the first certificate")
    if ours.not_valid_after_utc <= datetime.now(UTC):
        return _refused(f"{CHECK}.certificate", "has expired")
    return None


def _refused(check: str, reason: str) -> DependencyUnavailable:
    where = check.removeprefix(CHECK).lstrip(".") or "the document"
    return DependencyUnavailable(f"portal credentials secret refused at {where}: {reason}", check=check)


# -- the TLS context -----------------------------------------------------------------------------------


class _PasswordRequested(Exception):
    """OpenSSL asked for a key password: the key is encrypted after all."""


def _no_password() -> bytes:
    # Given as ``password`` so that OpenSSL never falls back to prompting on a terminal.
    raise _PasswordRequested


def build_ssl_context(document: PortalCredentialsDocument) -> ssl.SSLContext:
    """A client context for the portal: TLS >= 1.2, the server verified (certificate and host name),
    our certificate and key loaded. ``DependencyUnavailable`` names what OpenSSL refused."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.hostname_checks_common_name = False  # the host must be in subjectAltName (RFC 6125)
    failure: DependencyUnavailable | None = None
    try:
        if document.ca_bundle is not None:
            context.load_verify_locations(cadata=document.ca_bundle)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except (ssl.SSLError, ValueError) as exc:
        failure = _refused(f"{CHECK}.ca_bundle", f"was not accepted by OpenSSL ({type(exc).__name__})")
    if failure is None:
        try:
            _load_client_chain(context, document.certificate, document.private_key)
        except _PasswordRequested:
            failure = _refused(f"{CHECK}.private_key", _ENCRYPTED)
        except (ssl.SSLError, OSError) as exc:
            failure = _refused(
                f"{CHECK}.certificate", f"chain or key was not accepted by OpenSSL ({type(exc).__name__})"
            )
    if failure is None:
        return context
    del document, context
    raise failure


def _load_client_chain(context: ssl.SSLContext, certificate: str, private_key: str) -> None:
    if not _load_through_memory(context, certificate, private_key):
        _load_through_private_directory(context, certificate, private_key)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _load_through_memory(context: ssl.SSLContext, certificate: str, private_key: str) -> bool:
    """Anonymous in-memory files; False where the kernel or /proc does not offer them."""
    create = getattr(os, "memfd_create", None)
    if create is None:
        return False
    descriptors: list[int] = []
    try:
        for name, pem in (("portal-client-certificate", certificate), ("portal-client-key", private_key)):
            try:
                fd = create(name, os.MFD_CLOEXEC)
            except OSError:  # ENOSYS, or forbidden by a seccomp filter
                return False
            descriptors.append(fd)
            _write_all(fd, pem.encode("ascii"))
        paths = [f"/proc/self/fd/{fd}" for fd in descriptors]
        if not all(os.path.exists(path) for path in paths):
            return False  # no /proc: OpenSSL could not open them by name
        context.load_cert_chain(paths[0], paths[1], password=_no_password)
        return True
    finally:
        for fd in descriptors:
            os.close(fd)


def _load_through_private_directory(context: ssl.SSLContext, certificate: str, private_key: str) -> None:
    """0600 files in a fresh 0700 directory (``mkdtemp``), removed whatever happens."""
    directory = tempfile.mkdtemp(prefix="portal-mtls-")
    try:
        paths: list[str] = []
        for name, pem in (("client.pem", certificate), ("client.key", private_key)):
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                _write_all(fd, pem.encode("ascii"))
            finally:
                os.close(fd)
            paths.append(path)
        context.load_cert_chain(paths[0], paths[1], password=_no_password)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- Secrets Manager ----------------------------------------------------------------------------------


class SecretsManagerPortalCredentials:
    """The portal's client ``SSLContext`` from one secret, fetched on first use and kept for the
    life of the container. Only the context is kept: not the secret's text, not the key."""

    def __init__(self, client: SecretsManagerClient, secret_id: str) -> None:
        self._client = client
        self._secret_id = secret_id
        self._context: ssl.SSLContext | None = None
        # `chalice local` serves requests on threads: one fetch even when two ask at once.
        self._lock = threading.Lock()

    def ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            with self._lock:
                if self._context is None:
                    # No name holds the text here: a traceback through this frame keeps none.
                    self._context = build_ssl_context(parse_secret(self._fetch()))
                    logger.info(
                        "portal mTLS credentials loaded",
                        extra={"source": SERVICE, "check": CHECK},
                    )
        return self._context

    def _fetch(self) -> str:
        """GetSecretValue: the secret's current text."""
        try:
            answer = self._client.get_secret_value(SecretId=self._secret_id)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(SERVICE, "GetSecretValue", exc) from exc
        text = answer.get("SecretString")
        del answer  # SecretBinary, if any, is not ours to keep either
        if text is None:
            raise _refused(CHECK, "holds no SecretString (a JSON document is expected)")
        return text

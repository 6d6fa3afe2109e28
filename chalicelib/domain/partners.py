"""Partner registration documents: what a bank or app is allowed to ask for, and with which keys.

A partner document is written by the operator and validated here, once, with the same rules in the
operator CLI and in the service. It holds **public** keys only: a JWKS whose signing keys
authenticate the partner (``private_key_jwt``, DPoP) and whose encryption key receives sealed
payloads. Anything that could widen what a partner receives (an extra redirect URI, a loose URL, a
weak or private key) is refused with an error naming the field.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from chalicelib.domain.datasets import DATASETS, DERIVED_CLAIMS, DatasetId
from chalicelib.domain.errors import InvalidPartnerDocument

PARTNER_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{2,63}$"
PURPOSE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,63}$"
MAX_URL_LENGTH = 2000
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1"})
# Names that never reach the public internet (RFC 6761 localhost, RFC 6762 .local, .internal (ICANN
# 2024), and the usual private suffixes): a URL the relay itself calls must not name them (SSRF).
LEGACY_IPV4_PART = re.compile(r"0x[0-9a-f]*|[0-9]+")  # inet_aton's octal, hex and short forms
PRIVATE_NAME_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")


# IPv6 forms that carry an IPv4 address (judged as that address, as a router would deliver to it).
# Translations: the IPv4 address alone is the destination.
IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")  # RFC 4291 section 2.5.5.2
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 (SIIT)
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 section 2.5.5.1 (deprecated)
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 section 2.1
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")  # RFC 3056
# RFC 8215: local-use NAT64 prefixes, where the IPv4 address sits at any RFC 6052 position; IANA marks
# the block not globally reachable, so nothing inside it is public.
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
# Tunnels: the IPv6 address must be public and so must the IPv4 address inside it.
TEREDO = ipaddress.ip_network("2001::/32")  # RFC 4380: server, and the client XOR'd with ones
ISATAP_INTERFACE_IDS = (0x00005EFE, 0x02005EFE)  # RFC 5214 section 6.1, the u bit clear or set


def _last_32_bits(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def _embedded_ipv4(
    address: ipaddress.IPv6Address,
) -> tuple[tuple[ipaddress.IPv4Address, ...], bool]:
    """The IPv4 addresses an IPv6 address carries, and whether they alone decide (a translation)
    or the IPv6 address must be public too (a tunnel)."""
    if address in IPV4_MAPPED or address in IPV4_TRANSLATED or address in NAT64_WELL_KNOWN:
        return (_last_32_bits(address),), True
    if address in IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are judged as IPv6
        return (_last_32_bits(address),), True
    if address in SIX_TO_FOUR:
        return (ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF),), True
    if address in TEREDO and address.teredo is not None:
        return address.teredo, False
    if (int(address) >> 32) & 0xFFFFFFFF in ISATAP_INTERFACE_IDS:
        return (_last_32_bits(address),), False
    return (), False


def is_public_address(text: str) -> bool:
    """Whether an IP address is one of the public internet's (not private, loopback, link-local such
    as the instance metadata service's 169.254.169.254, shared, multicast or reserved). An IPv6
    address that carries an IPv4 address (IPv4-mapped, -translated or -compatible, NAT64 64:ff9b::/96,
    6to4, Teredo, ISATAP) is judged by that IPv4 address too; the local-use NAT64 prefix
    64:ff9b:1::/48 is never public."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address in NAT64_LOCAL_USE:
            return False
        embedded, decides = _embedded_ipv4(address)
        if not all(_is_public(inner) for inner in embedded):
            return False
        if embedded and decides:
            return True
    return _is_public(address)


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not address.is_multicast


def private_host(host: str) -> str | None:
    """Why a URL's host cannot be called from the relay on AWS, or None: an IP literal outside the
    public internet, or a name that only resolves inside a private network. (A public name may still
    resolve to a private address: the webhook sender checks each address it connects to.)"""
    name = host.rstrip(".").lower()
    try:
        public = is_public_address(name)
    except ValueError:
        if name == "localhost" or name.endswith(PRIVATE_NAME_SUFFIXES) or "." not in name:
            return f"{host} is not a public internet name"
        if all(LEGACY_IPV4_PART.fullmatch(label) for label in name.split(".")):
            return f"{host} is an IPv4 address in a legacy notation (127.1, 0x7f.0.0.1)"
        return None
    return None if public else f"{host} is not a public internet address"


# RFC 7517/7518 members that only a private (or symmetric) key has.
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
SIGNING_ALGORITHMS = {"ES256": ("EC", "P-256"), "PS256": ("RSA", None), "EdDSA": ("OKP", "Ed25519")}
ENCRYPTION_ALGORITHMS = {"ECDH-ES+A256KW": ("EC", "P-256")}
MIN_RSA_BITS = 2048

DisplayText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LocalizedText(_Frozen):
    """Text shown to residents: Japanese first (the default language), English for ``?lang=en``."""

    ja: DisplayText
    en: DisplayText


class PublicJwk(_Frozen):
    """One public key of the partner (RFC 7517), restricted to the algorithms FAPI 2.0 allows."""

    kty: Literal["EC", "RSA", "OKP"]
    kid: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
    use: Literal["sig", "enc"]
    alg: str
    crv: str | None = None
    x: str | None = None
    y: str | None = None
    n: str | None = None
    e: str | None = None
    _imported: ECKey | RSAKey | OKPKey | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _no_private_material(cls, data: Any) -> Any:
        if isinstance(data, dict):
            leaked = [member for member in PRIVATE_JWK_MEMBERS if member in data]
            if leaked:
                raise ValueError(
                    f"contains private key material ({', '.join(leaked)}); register the public key only"
                )
        return data

    @model_validator(mode="after")
    def _algorithm_fits_key(self) -> PublicJwk:
        allowed = SIGNING_ALGORITHMS if self.use == "sig" else ENCRYPTION_ALGORITHMS
        if self.alg not in allowed:
            raise ValueError(
                f"alg {self.alg!r} is not allowed for use={self.use!r}; allowed: {', '.join(allowed)}"
            )
        kty, crv = allowed[self.alg]
        if self.kty != kty or (crv is not None and self.crv != crv):
            raise ValueError(f"alg {self.alg} needs kty={kty}" + (f" and crv={crv}" if crv else ""))
        try:
            key = self.to_joserfc()
        except (JoseError, ValueError, TypeError) as exc:
            raise ValueError(f"not a valid {self.kty} public key ({type(exc).__name__})") from None
        if isinstance(key, RSAKey):
            bits = key.public_key.key_size
            if bits < MIN_RSA_BITS:
                raise ValueError(f"RSA key of {bits} bits is too short; at least {MIN_RSA_BITS} bits")
        return self

    def to_joserfc(self) -> ECKey | RSAKey | OKPKey:
        """The key as joserfc's, imported once per (immutable) instance: validation imports it to
        check it, and the partner documents a warm container keeps (partner_cache) then hand the
        same key to every request's signature check and sealing instead of importing it again."""
        if self._imported is None:
            self._imported = self._import()
        return self._imported

    def _import(self) -> ECKey | RSAKey | OKPKey:
        data = self.model_dump(exclude_none=True)
        if self.kty == "EC":
            return ECKey.import_key(data)
        if self.kty == "RSA":
            return RSAKey.import_key(data)
        return OKPKey.import_key(data)


class PartnerJwks(_Frozen):
    keys: Annotated[tuple[PublicJwk, ...], Field(min_length=1, max_length=10)]

    @model_validator(mode="after")
    def _one_of_each_and_unique(self) -> PartnerJwks:
        kids = [key.kid for key in self.keys]
        duplicates = sorted({kid for kid in kids if kids.count(kid) > 1})
        if duplicates:
            raise ValueError(f"kid values must be unique; repeated: {', '.join(duplicates)}")
        if not any(key.use == "sig" for key in self.keys):
            raise ValueError("needs at least one signing key (use=sig, alg ES256, PS256 or EdDSA)")
        if not any(key.use == "enc" for key in self.keys):
            raise ValueError("needs at least one encryption key (use=enc, alg ECDH-ES+A256KW, P-256)")
        return self

    def signing_keys(self) -> tuple[PublicJwk, ...]:
        return tuple(key for key in self.keys if key.use == "sig")

    def encryption_keys(self) -> tuple[PublicJwk, ...]:
        return tuple(key for key in self.keys if key.use == "enc")


class Purpose(_Frozen):
    """Data minimisation as configuration: one dataset, the fields released, for how long."""

    id: Annotated[str, StringConstraints(pattern=PURPOSE_ID_PATTERN)]
    titles: LocalizedText
    dataset: DatasetId
    fields: Annotated[tuple[str, ...], Field(max_length=50)] = ()
    derived_claims: dict[str, Annotated[int, Field(ge=0, le=10**12)]] = Field(default_factory=dict)
    data_life: timedelta

    @field_validator("data_life")
    @classmethod
    def _data_life_in_bounds(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(hours=24):
            raise ValueError("must be between 1 minute (PT1M) and 24 hours (PT24H)")
        return value

    @model_validator(mode="after")
    def _fields_belong_to_dataset(self) -> Purpose:
        dataset = DATASETS[self.dataset]
        unknown = [name for name in self.fields if name not in dataset.field_names]
        if unknown:
            raise ValueError(
                f"fields not in dataset {self.dataset}: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(dataset.field_names))}"
            )
        if len(set(self.fields)) != len(self.fields):
            raise ValueError("fields must not repeat")
        for claim in self.derived_claims:
            info = DERIVED_CLAIMS.get(claim)
            if info is None or info.dataset != self.dataset:
                raise ValueError(f"derived claim {claim!r} is not defined for dataset {self.dataset}")
        if not self.fields and not self.derived_claims:
            raise ValueError("releases nothing: list at least one field or derived claim")
        return self


def validate_partner_url(
    value: str, info: ValidationInfo, *, what: str, called_by_relay: bool = False
) -> str:
    """Exact, absolute https URLs; loopback http only where the stage allows it. A URL the relay
    calls itself (the webhook) must name a public host outside the local and test stages (SSRF)."""
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"{what} is longer than {MAX_URL_LENGTH} characters")
    if not value.isascii() or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{what} must be printable ASCII (register internationalised hosts in punycode)")
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} must not carry user information")
    if parts.fragment or "#" in value:
        raise ValueError(f"{what} must not contain a fragment (RFC 6749 section 3.1.2)")
    host = parts.hostname or ""
    if not host or "*" in value:
        raise ValueError(f"{what} needs an exact host (no wildcards)")
    try:
        parts.port  # noqa: B018  # raises on a malformed port
    except ValueError:
        raise ValueError(f"{what} has an invalid port") from None
    allow_loopback = bool(info.context and info.context.get("allow_loopback"))
    if called_by_relay and not allow_loopback:
        reason = private_host(host)
        if reason is not None:
            raise ValueError(f"{what} must reach the public internet: {reason}")
    if parts.scheme == "https":
        return value
    if parts.scheme == "http" and host in LOOPBACK_HOSTS:
        if allow_loopback:
            return value
        raise ValueError(f"{what} on http://{host} is allowed only in the local and test stages")
    raise ValueError(f"{what} must use https")


class Partner(_Frozen):
    """A registered partner (an OAuth confidential client of this service)."""

    id: Annotated[str, StringConstraints(pattern=PARTNER_ID_PATTERN)]
    names: LocalizedText
    redirect_uris: Annotated[tuple[str, ...], Field(min_length=1, max_length=10)]
    jwks: PartnerJwks
    purposes: Annotated[tuple[Purpose, ...], Field(min_length=1, max_length=20)]
    webhook_url: str | None = None
    enabled: bool = True

    @field_validator("redirect_uris")
    @classmethod
    def _redirect_uris_exact(cls, values: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for value in values:
            validate_partner_url(value, info, what="redirect URI")
        if len(set(values)) != len(values):
            raise ValueError("redirect URIs must not repeat")
        return values

    @field_validator("webhook_url")
    @classmethod
    def _webhook_https(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return validate_partner_url(value, info, what="webhook URL", called_by_relay=True)

    @model_validator(mode="after")
    def _purpose_ids_unique(self) -> Partner:
        ids = [purpose.id for purpose in self.purposes]
        if len(set(ids)) != len(ids):
            raise ValueError("purpose ids must be unique")
        return self

    def purpose(self, purpose_id: str) -> Purpose | None:
        return next((p for p in self.purposes if p.id == purpose_id), None)


def _location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(document)"


def describe_validation_error(exc: ValidationError, *, prefix: tuple[str, ...] = ()) -> tuple[str, ...]:
    """One line per failure, each naming the field: ``jwks.keys[1].alg: ...``."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{_location((*prefix, *error['loc']))}: {message}")
    return tuple(lines)


def invalid_document(exc: ValidationError, *, prefix: tuple[str, ...] = ()) -> InvalidPartnerDocument:
    """``InvalidPartnerDocument`` listing every failed field; ``check`` is the first."""
    errors = describe_validation_error(exc, prefix=prefix)
    return InvalidPartnerDocument("; ".join(errors), check=errors[0].split(":", 1)[0], errors=errors)


def parse_partner_document(data: Any, *, allow_loopback: bool) -> Partner:
    """Validate a partner document; raise ``InvalidPartnerDocument`` listing every failed field."""
    try:
        return Partner.model_validate(data, context={"allow_loopback": allow_loopback})
    except ValidationError as exc:
        raise invalid_document(exc) from None

"""A partner's two key pairs: an ES256 signing key (client authentication, ``private_key_jwt``) and a
P-256 ``ECDH-ES+A256KW`` encryption key (the relay seals deliveries to it).

``generate_partner_keys`` makes a fresh pair with dated kids (``<client_id>-sig-<YYYY-MM>`` and
``<client_id>-enc-<YYYY-MM>``); ``PartnerKeys.public_jwks()`` is what goes into the registration
document (docs/operations.md), ``private_jwks()`` is what the partner keeps secret, and
``PartnerKeys.load(path)`` reads such a private JWKS back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey

SIGNING_ALG = "ES256"
ENCRYPTION_ALG = "ECDH-ES+A256KW"
CONTENT_ENCRYPTION = "A256GCM"


class KeyFileError(ValueError):
    """A JWKS does not hold the keys a partner needs; the message says which."""


@dataclass(frozen=True)
class PartnerKeys:
    """The partner's private signing key (``use=sig``, ES256) and encryption key (``use=enc``)."""

    signing_key: ECKey
    encryption_key: ECKey

    @property
    def signing_kid(self) -> str:
        return str(self.signing_key.kid)

    @property
    def encryption_kid(self) -> str:
        return str(self.encryption_key.kid)

    def public_jwks(self) -> dict[str, Any]:
        """The JWKS to register with the relay: public halves only, each with ``kid``, ``use``, ``alg``."""
        return {"keys": [_jwk(self.signing_key, private=False), _jwk(self.encryption_key, private=False)]}

    def private_jwks(self) -> dict[str, Any]:
        """Both private keys as a JWKS. Keep it secret (a vault, a KMS import, a file readable by one user)."""
        return {"keys": [_jwk(self.signing_key, private=True), _jwk(self.encryption_key, private=True)]}

    @classmethod
    def from_jwks(cls, jwks: dict[str, Any]) -> PartnerKeys:
        """The first ES256 signing key and the first ECDH-ES+A256KW encryption key of a private JWKS.

        Members other than ``keys`` (such as the demo files' ``_warning``) are ignored.
        """
        keys = jwks.get("keys")
        if not isinstance(keys, list):
            raise KeyFileError("the JWKS has no 'keys' list")
        signing: ECKey | None = None
        encryption: ECKey | None = None
        for index, member in enumerate(keys):
            if not isinstance(member, dict):
                raise KeyFileError(f"keys[{index}] is not an object")
            if member.get("kty") != "EC" or member.get("crv") != "P-256":
                continue
            if "d" not in member:
                raise KeyFileError(
                    f"keys[{index}] ({member.get('kid')}) is a public key; a private JWKS is needed"
                )
            if not member.get("kid"):
                raise KeyFileError(f"keys[{index}] has no kid")
            if member.get("use") == "sig" and member.get("alg") == SIGNING_ALG and signing is None:
                signing = ECKey.import_key(member)
            elif member.get("use") == "enc" and member.get("alg") == ENCRYPTION_ALG and encryption is None:
                encryption = ECKey.import_key(member)
        if signing is None:
            raise KeyFileError("no P-256 key with use=sig and alg=ES256")
        if encryption is None:
            raise KeyFileError("no P-256 key with use=enc and alg=ECDH-ES+A256KW")
        return cls(signing_key=signing, encryption_key=encryption)

    @classmethod
    def load(cls, path: str | Path) -> PartnerKeys:
        """Read a private JWKS file, e.g. ``local/partners/demo-bank.DEMO-ONLY-private-jwks.json``."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise KeyFileError(f"{path}: not JSON ({exc})") from exc
        if not isinstance(document, dict):
            raise KeyFileError(f"{path}: not a JWKS object")
        return cls.from_jwks(document)


def generate_partner_keys(client_id: str, *, now: datetime | None = None) -> PartnerKeys:
    """A fresh signing key and encryption key, kids ``<client_id>-sig-<YYYY-MM>`` / ``-enc-``."""
    month = (now or datetime.now(UTC)).strftime("%Y-%m")
    signing = ECKey.generate_key(
        "P-256", parameters={"kid": f"{client_id}-sig-{month}", "use": "sig", "alg": SIGNING_ALG}
    )
    encryption = ECKey.generate_key(
        "P-256", parameters={"kid": f"{client_id}-enc-{month}", "use": "enc", "alg": ENCRYPTION_ALG}
    )
    return PartnerKeys(signing_key=signing, encryption_key=encryption)


def _jwk(key: ECKey, *, private: bool) -> dict[str, Any]:
    member: dict[str, Any] = dict(key.as_dict(private=private))
    ordered: dict[str, Any] = {name: member[name] for name in ("kty", "crv", "x", "y", "d") if name in member}
    ordered.update({"kid": key.kid, "use": member.get("use"), "alg": member.get("alg")})
    return ordered

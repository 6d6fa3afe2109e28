"""ES256 signing with a KMS asymmetric key (``ECC_NIST_P256``, ``SIGN_VERIFY``).

The private key never leaves KMS. The public half is fetched once per container and served as a
JWK whose ``kid`` is its RFC 7638 thumbprint: stable for the life of the key, different after a
rotation, and recomputable by anyone from the key itself.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key
from joserfc.jwk import ECKey

from chalicelib.adapters.aws import unavailable
from chalicelib.domain.errors import DependencyUnavailable

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient

# KMS signs at most 4096 bytes with MessageType=RAW; longer inputs are hashed here and signed as
# DIGEST. (moto ignores DIGEST and hashes again, so only RAW is verifiable under moto.)
KMS_RAW_LIMIT = 4096
SIGNING_ALGORITHM: Final = "ECDSA_SHA_256"


class KmsSigner:
    def __init__(self, client: KMSClient, key_id: str) -> None:
        self._client = client
        self._key_id = key_id
        self._jwk: dict[str, Any] | None = None
        # The key the alias named when the public key was fetched: every signature is made with
        # that key, so the kid a container publishes always matches what it signs with, even while
        # an operator moves the alias to a new key (docs/deploy.md, key rotation).
        self._signing_key_arn: str | None = None

    def public_jwk(self) -> dict[str, Any]:
        """Calls KMS GetPublicKey on first use only."""
        if self._jwk is None:
            self._jwk = self._fetch_public_jwk()
        return dict(self._jwk)

    def _fetch_public_jwk(self) -> dict[str, Any]:
        try:
            answer = self._client.get_public_key(KeyId=self._key_id)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("kms", "GetPublicKey", exc) from exc
        # moto answers only the deprecated CustomerMasterKeySpec; AWS answers both.
        described: dict[str, Any] = dict(answer)
        key_spec = described.get("KeySpec") or described.get("CustomerMasterKeySpec")
        if (
            key_spec != "ECC_NIST_P256"
            or answer.get("KeyUsage") != "SIGN_VERIFY"
            or SIGNING_ALGORITHM not in answer.get("SigningAlgorithms", [])
        ):
            raise DependencyUnavailable(
                "the configured signing key is not an ECC_NIST_P256 SIGN_VERIFY key", check="signing_key"
            )
        public_key = load_der_public_key(answer["PublicKey"])
        if not isinstance(public_key, EllipticCurvePublicKey) or not isinstance(public_key.curve, SECP256R1):
            raise DependencyUnavailable("the configured signing key is not P-256", check="signing_key")
        self._signing_key_arn = str(answer.get("KeyId") or self._key_id)
        key = ECKey.import_key(public_key)
        jwk = dict(key.as_dict(private=False))
        jwk.update({"kid": key.thumbprint(), "use": "sig", "alg": "ES256"})
        return jwk

    def sign(self, message: bytes) -> bytes:
        """Calls KMS Sign with the key whose public half this container publishes; returns the
        JWS form ``r || s`` (RFC 7518 section 3.4)."""
        self.public_jwk()  # cached after the first call; pins the key behind the alias
        if len(message) <= KMS_RAW_LIMIT:
            params: dict[str, Any] = {"Message": message, "MessageType": "RAW"}
        else:
            params = {"Message": hashlib.sha256(message).digest(), "MessageType": "DIGEST"}
        try:
            answer = self._client.sign(
                KeyId=self._signing_key_arn or self._key_id, SigningAlgorithm=SIGNING_ALGORITHM, **params
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("kms", "Sign", exc) from exc
        r, s = decode_dss_signature(answer["Signature"])
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

"""Makes the AWS emulator (moto) honour one DynamoDB guarantee our code relies on.

DynamoDB applies each request atomically: a conditional write or a TransactWriteItems checks its
conditions and writes as one step, so of two concurrent conditional writes on one item exactly one
succeeds. moto evaluates conditions and applies writes without a lock, so concurrent requests can
interleave and both "succeed". Serialising moto's DynamoDB request handling restores the
guarantee for local runs and tests; it never applies to real AWS (``infra`` is not shipped).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_LOCK = threading.RLock()
_PATCHED = False


def make_dynamodb_requests_atomic() -> None:
    """Idempotent; call before the first DynamoDB request reaches moto."""
    global _PATCHED  # a process-wide patch of the emulator, applied once
    if _PATCHED:
        return
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with _LOCK:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    _PATCHED = True


_DIGEST = threading.local()
_KMS_PATCHED = False


def make_kms_honour_digest() -> None:
    """moto ignores ``MessageType=DIGEST`` on KMS Sign and hashes the digest again, so a signature
    over a pre-hashed message (how KMS signs inputs above 4 KiB) never verifies. Honour it, as AWS
    does (upstream fix: getmoto/moto PR #10202). Idempotent; local runs and tests only."""
    global _KMS_PATCHED  # a process-wide patch of the emulator, applied once
    if _KMS_PATCHED:
        return
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    from moto.kms.responses import KmsResponse
    from moto.kms.utils import ECDSAPrivateKey

    original_response = KmsResponse.sign
    original_sign = ECDSAPrivateKey.sign

    @functools.wraps(original_response)
    def response_sign(self: Any) -> Any:
        _DIGEST.active = self._get_param("MessageType") == "DIGEST"
        try:
            return original_response(self)
        finally:
            _DIGEST.active = False

    @functools.wraps(original_sign)
    def key_sign(self: Any, message: bytes, signing_algorithm: str) -> bytes:
        if not getattr(_DIGEST, "active", False):
            return original_sign(self, message, signing_algorithm)
        hash_algorithm = self._ECDSAPrivateKey__hash_algorithm(signing_algorithm)
        signature: bytes = self.private_key.sign(message, ec.ECDSA(Prehashed(hash_algorithm)))
        return signature

    KmsResponse.sign = response_sign  # type: ignore[method-assign]
    ECDSAPrivateKey.sign = key_sign  # type: ignore[method-assign]
    _KMS_PATCHED = True


def make_emulator_faithful() -> None:
    """Every emulator fix above, for the launcher and the test suite."""
    make_dynamodb_requests_atomic()
    make_kms_honour_digest()

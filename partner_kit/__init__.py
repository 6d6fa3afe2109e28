"""myna-relay partner kit: what a bank or app needs to receive Mynaportal records through the relay.

Written from the protocol alone (the relay's discovery metadata, docs/partners.md and
docs/partner-audit.md); it imports nothing from the relay itself. Quickstart: ``partner_kit/README.md``.
"""

from partner_kit.client import (
    Delivery,
    PendingAuthorization,
    RelayClient,
    SealedDelivery,
    new_code_verifier,
    s256,
)
from partner_kit.errors import (
    AuthorizationError,
    CallbackMismatch,
    DeliveryGone,
    DeliveryTimeout,
    InconsistentLog,
    RelayError,
    VerificationError,
)
from partner_kit.keys import KeyFileError, PartnerKeys, generate_partner_keys
from partner_kit.rfc9162 import verify_consistency

__all__ = [
    "AuthorizationError",
    "CallbackMismatch",
    "Delivery",
    "DeliveryGone",
    "DeliveryTimeout",
    "InconsistentLog",
    "KeyFileError",
    "PartnerKeys",
    "PendingAuthorization",
    "RelayClient",
    "RelayError",
    "SealedDelivery",
    "VerificationError",
    "generate_partner_keys",
    "new_code_verifier",
    "s256",
    "verify_consistency",
]

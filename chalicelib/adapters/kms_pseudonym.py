"""HMACs with the KMS pseudonym key (``HMAC_256``, ``GENERATE_VERIFY_MAC``; the key never leaves
KMS). Since issue [13] only to check receipt links made before the keyring (the resident pseudonym
is random, new links are MACed under the keyring's monthly key): removable 30 days after that
upgrade (docs/deploy.md, "The pseudonym key")."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.aws import unavailable

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient


class KmsPseudonymizer:
    def __init__(self, client: KMSClient, key_id: str) -> None:
        self._client = client
        self._key_id = key_id

    def pseudonym(self, subject: str) -> str:
        """Calls KMS GenerateMac (HMAC-SHA-256)."""
        try:
            answer = self._client.generate_mac(
                KeyId=self._key_id, Message=subject.encode(), MacAlgorithm="HMAC_SHA_256"
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("kms", "GenerateMac", exc) from exc
        return base64.urlsafe_b64encode(answer["Mac"]).rstrip(b"=").decode()

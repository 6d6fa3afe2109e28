"""Symmetric encryption with the KMS data key. Since issue [13] the portal access token is
encrypted under the keyring's daily token key (``keyring.KeyringEnvelope``); this decrypts the
tokens KMS encrypted before that, for the flows in flight at the upgrade.

Direct KMS Encrypt/Decrypt (values are far below KMS's 4 KiB limit), always with an encryption
context, so a ciphertext copied to another flow does not decrypt. The plaintext never leaves
memory and is never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.aws import unavailable

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient


class KmsEnvelope:
    def __init__(self, client: KMSClient, key_id: str) -> None:
        self._client = client
        self._key_id = key_id

    def encrypt(self, plaintext: bytes, *, context: dict[str, str]) -> bytes:
        """Calls KMS Encrypt."""
        try:
            answer = self._client.encrypt(KeyId=self._key_id, Plaintext=plaintext, EncryptionContext=context)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("kms", "Encrypt", exc) from exc
        return answer["CiphertextBlob"]

    def decrypt(self, ciphertext: bytes, *, context: dict[str, str]) -> bytes:
        """Calls KMS Decrypt, pinned to our key and the same context."""
        try:
            answer = self._client.decrypt(
                KeyId=self._key_id, CiphertextBlob=ciphertext, EncryptionContext=context
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("kms", "Decrypt", exc) from exc
        return answer["Plaintext"]

"""The composition root: builds settings, AWS clients, adapters and domain services, lazily.

Nothing is built at import time (cold start, and Chalice's test client sets a stage's environment
only during a request). One ``Container`` lives per Lambda container and caches what is expensive
(clients, the public JWKS); ``reset()`` drops it for tests.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from chalicelib.domain.clock import SystemClock
from chalicelib.domain.registry import PartnerRegistry
from chalicelib.settings import Settings, get_settings

if TYPE_CHECKING:
    from chalicelib.adapters.aws import AwsClients
    from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
    from chalicelib.adapters.kms_signer import KmsSigner
    from chalicelib.domain.ports import Clock


class Container:
    def __init__(self, settings: Settings | None = None, clock: Clock | None = None) -> None:
        self._settings = settings
        self.clock: Clock = clock or SystemClock()

    @cached_property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    @cached_property
    def aws(self) -> AwsClients:
        from chalicelib.adapters.aws import AwsClients

        return AwsClients(self.settings)

    @cached_property
    def partner_store(self) -> DynamoPartnerStore:
        from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore

        return DynamoPartnerStore(
            self.aws.dynamodb, self.settings.partners_table, allow_loopback=self.settings.allows_loopback_urls
        )

    @cached_property
    def partners(self) -> PartnerRegistry:
        return PartnerRegistry(
            self.partner_store, self.clock, allow_loopback=self.settings.allows_loopback_urls
        )

    @cached_property
    def signer(self) -> KmsSigner:
        """The current signing key."""
        from chalicelib.adapters.kms_signer import KmsSigner

        return KmsSigner(self.aws.kms, self.settings.signing_key_id)

    @cached_property
    def published_signers(self) -> tuple[KmsSigner, ...]:
        """The current key first, then the keys kept published after a rotation."""
        from chalicelib.adapters.kms_signer import KmsSigner

        previous = tuple(KmsSigner(self.aws.kms, key_id) for key_id in self.settings.previous_signing_key_ids)
        return (self.signer, *previous)

    def jwks(self) -> dict[str, Any]:
        """The public JWKS; each key is fetched from KMS once per container."""
        keys: list[dict[str, Any]] = []
        for signer in self.published_signers:
            jwk = signer.public_jwk()
            if all(existing["kid"] != jwk["kid"] for existing in keys):
                keys.append(jwk)
        return {"keys": keys}


_container: Container | None = None


def get_container() -> Container:
    global _container  # one composition root per Lambda container, by design
    if _container is None:
        _container = Container()
    return _container


def reset() -> None:
    """Forget every built object and the cached settings (tests, and nothing else)."""
    global _container
    _container = None
    get_settings.cache_clear()

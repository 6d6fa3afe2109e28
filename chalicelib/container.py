"""The composition root: builds settings, AWS clients, adapters and domain services, lazily.

Nothing is built at import time (cold start, and Chalice's test client sets a stage's environment
only during a request). One ``Container`` lives per Lambda container and caches what is expensive
(clients, the public JWKS); ``reset()`` drops it for tests.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from chalicelib.domain.clock import SystemClock
from chalicelib.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:
    from chalicelib.adapters.aws import AwsClients
    from chalicelib.adapters.dynamodb_audit import DynamoAuditLog
    from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
    from chalicelib.adapters.dynamodb_state import DynamoStateStore
    from chalicelib.adapters.keyring import Keyring, KeyringEnvelope, KeyringEventSigners, KeyringLinkMac
    from chalicelib.adapters.kms_pseudonym import KmsPseudonymizer
    from chalicelib.adapters.kms_signer import KmsSigner
    from chalicelib.adapters.mynaportal import MynaportalClient
    from chalicelib.adapters.partner_cache import CachedPartnerLookup
    from chalicelib.adapters.portal_credentials import SecretsManagerPortalCredentials
    from chalicelib.adapters.s3_anchor import S3HeadAnchor
    from chalicelib.domain.authorization import AuthorizationConfig, AuthorizationService
    from chalicelib.domain.checkpoints import CheckpointService
    from chalicelib.domain.delivery import DeliveryService
    from chalicelib.domain.ports import Clock
    from chalicelib.domain.receipts import ReceiptService
    from chalicelib.domain.registry import PartnerRegistry


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
    def partner_lookup(self) -> CachedPartnerLookup:
        """Partners as requests read them: kept up to ``partner_cache_ttl_s`` per warm container."""
        from chalicelib.adapters.partner_cache import CachedPartnerLookup

        return CachedPartnerLookup(
            self.partner_store,
            self.clock,
            ttl=timedelta(seconds=self.settings.partner_cache_ttl_s),
            max_entries=self.settings.partner_cache_size,
        )

    @cached_property
    def partners(self) -> PartnerRegistry:
        from chalicelib.domain.registry import PartnerRegistry

        return PartnerRegistry(
            self.partner_store,
            self.clock,
            allow_loopback=self.settings.allows_loopback_urls,
            lookup=self.partner_lookup,
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

    @cached_property
    def state_store(self) -> DynamoStateStore:
        from chalicelib.adapters.dynamodb_state import DynamoStateStore

        return DynamoStateStore(
            self.aws.dynamodb,
            self.settings.state_table,
            audit_table=self.settings.audit_table,
            audit_retention=timedelta(days=self.settings.audit_retention_days),
        )

    @cached_property
    def keyring(self) -> Keyring:
        """The stage's working keys (portal token, receipt links, webhook events), wrapped by the
        data key in the state table and unwrapped once per slot per container."""
        from chalicelib.adapters.keyring import Keyring

        return Keyring(
            dynamodb=self.aws.dynamodb,
            kms=self.aws.kms,
            table=self.settings.state_table,
            data_key_id=self.settings.data_key_id,
            stage=self.settings.stage,
            clock=self.clock,
        )

    @cached_property
    def envelope(self) -> KeyringEnvelope:
        """AES-GCM under the daily token key; a KMS ciphertext from before the keyring still
        decrypts with KMS."""
        from chalicelib.adapters.keyring import KeyringEnvelope
        from chalicelib.adapters.kms_envelope import KmsEnvelope

        return KeyringEnvelope(self.keyring, legacy=KmsEnvelope(self.aws.kms, self.settings.data_key_id))

    @cached_property
    def event_signers(self) -> KeyringEventSigners:
        from chalicelib.adapters.keyring import KeyringEventSigners

        return KeyringEventSigners(self.keyring)

    @cached_property
    def receipt_links(self) -> KeyringLinkMac:
        from chalicelib.adapters.keyring import KeyringLinkMac

        return KeyringLinkMac(self.keyring)

    @cached_property
    def portal(self) -> MynaportalClient:
        from chalicelib.adapters.mynaportal import MynaportalClient, PortalClientConfig, PortalEndpoints

        settings = self.settings
        endpoints = (
            settings.portal_authorize_url,
            settings.portal_token_url,
            settings.portal_request_url,
            settings.portal_result_url,
        )
        if any(endpoint is None for endpoint in endpoints):
            raise SettingsError("the Mynaportal endpoints (RELAY_PORTAL_*_URL) are not configured")
        authorize_url, token_url, request_url, result_url = (str(endpoint) for endpoint in endpoints)
        # In AWS the mTLS credentials come from Secrets Manager, read by the client on its first
        # portal call (not when a service holding it is built); locally from the sandbox's PEM
        # files. Settings allow only one of the two.
        ssl_context = self.portal_credentials.ssl_context if self.portal_credentials is not None else None
        return MynaportalClient(
            PortalClientConfig(
                endpoints=PortalEndpoints(
                    authorize_url=authorize_url,
                    token_url=token_url,
                    request_url=request_url,
                    result_url=result_url,
                ),
                client_cert=settings.portal_client_cert,
                client_key=settings.portal_client_key,
                ca_bundle=settings.portal_ca_bundle,
                connect_timeout_s=settings.portal_connect_timeout_s,
                read_timeout_s=settings.portal_read_timeout_s,
                ssl_context=ssl_context,
            )
        )

    @cached_property
    def portal_credentials(self) -> SecretsManagerPortalCredentials | None:
        """The portal's mTLS credentials from Secrets Manager, or None where they are PEM files."""
        secret_id = self.settings.portal_client_secret_id
        if secret_id is None:
            return None
        from chalicelib.adapters.portal_credentials import SecretsManagerPortalCredentials

        return SecretsManagerPortalCredentials(self.aws.secretsmanager, secret_id)

    @cached_property
    def authorization_config(self) -> AuthorizationConfig:
        from chalicelib.adapters.mynaportal_inferred import LOGIN_TYPE
        from chalicelib.domain.authorization import AuthorizationConfig

        settings = self.settings
        issuer = str(settings.issuer).rstrip("/")
        return AuthorizationConfig(
            issuer=issuer,
            par_endpoint=f"{issuer}/par",
            authorization_endpoint=f"{issuer}/authorize",
            token_endpoint=f"{issuer}/token",
            revocation_endpoint=f"{issuer}/revoke",
            portal_authorize_url=settings.portal_authorize_url or "",
            portal_callback_url=f"{issuer}/portal/callback",
            portal_services=dict(settings.portal_services),
            portal_login_type=LOGIN_TYPE,
            request_uri_lifetime=timedelta(seconds=settings.request_uri_lifetime_s),
            code_lifetime=timedelta(seconds=settings.authorization_code_lifetime_s),
            portal_state_lifetime=timedelta(seconds=settings.portal_state_lifetime_s),
            retrieval_deadline=timedelta(seconds=settings.retrieval_deadline_s),
            portal_inquiry_date=settings.portal_fixed_inquiry_date,
            first_poll_after=timedelta(seconds=settings.retrieval_first_poll_s),
        )

    @cached_property
    def authorization(self) -> AuthorizationService:
        from chalicelib.adapters.mynaportal_inferred import (
            classify_callback_error,
            classify_callback_state,
        )
        from chalicelib.domain.authorization import AuthorizationService

        return AuthorizationService(
            config=self.authorization_config,
            partners=self.partners,
            flows=self.state_store,
            replay=self.state_store,
            portal=self.portal,
            envelope=self.envelope,
            clock=self.clock,
            classify_portal_error=classify_callback_error,
            classify_portal_state=classify_callback_state,
        )

    @cached_property
    def legacy_receipt_links(self) -> KmsPseudonymizer:
        """The KMS HMAC key of the receipt links issued before the keyring (30 days at most)."""
        from chalicelib.adapters.kms_pseudonym import KmsPseudonymizer

        return KmsPseudonymizer(self.aws.kms, self.settings.pseudonym_key_id)

    @cached_property
    def delivery(self) -> DeliveryService:
        from chalicelib.adapters.webhooks import HttpWebhookSender
        from chalicelib.domain.delivery import DeliveryConfig, DeliveryService
        from chalicelib.domain.portal_mapping import load_mapping
        from chalicelib.telemetry import record_metric

        issuer = self.authorization_config.issuer
        return DeliveryService(
            config=DeliveryConfig(
                issuer=issuer,
                self_info_url=f"{issuer}/v1/self-info",
                max_result_bytes=self.settings.max_result_bytes,
                mapping=load_mapping(self.settings.portal_mapping_file),
            ),
            store=self.state_store,
            partners=self.partners,
            portal=self.portal,
            envelope=self.envelope,
            signer=self.signer,
            event_signers=self.event_signers,
            replay=self.state_store,
            webhooks=HttpWebhookSender(allow_private=self.settings.allows_loopback_urls),
            clock=self.clock,
            metrics=record_metric,
        )

    @cached_property
    def audit_log(self) -> DynamoAuditLog:
        from chalicelib.adapters.dynamodb_audit import DynamoAuditLog

        return DynamoAuditLog(
            self.aws.dynamodb,
            self.settings.audit_table,
            retention=timedelta(days=self.settings.audit_retention_days),
        )

    @cached_property
    def head_anchor(self) -> S3HeadAnchor | None:
        """The write-once bucket for signed tree heads (none configured: heads stay in DynamoDB)."""
        from chalicelib.adapters.s3_anchor import S3HeadAnchor

        bucket = self.settings.heads_bucket
        return S3HeadAnchor(self.aws.s3, bucket) if bucket else None

    @cached_property
    def checkpoints(self) -> CheckpointService:
        from chalicelib.domain.checkpoints import CheckpointService

        return CheckpointService(
            store=self.audit_log,
            signer=self.signer,
            clock=self.clock,
            issuer=self.authorization_config.issuer,
            anchor=self.head_anchor,
        )

    @cached_property
    def receipts(self) -> ReceiptService:
        from chalicelib.domain.receipts import ReceiptService

        return ReceiptService(
            links=self.receipt_links,
            legacy=self.legacy_receipt_links,
            audit=self.audit_log,
            flows=self.state_store,
            partners=self.partners,
            checkpoints=self.checkpoints,
            signer=self.signer,
            clock=self.clock,
            issuer=self.authorization_config.issuer,
        )

    def jwks(self) -> dict[str, Any]:
        """The public JWKS: the KMS keys (each fetched once per container), then the webhook
        event keys of the previous, current and next hour (one read, kept 60 s)."""
        keys: list[dict[str, Any]] = []
        for signer in self.published_signers:
            jwk = signer.public_jwk()
            if all(existing["kid"] != jwk["kid"] for existing in keys):
                keys.append(jwk)
        keys.extend(self.keyring.published_event_keys())
        return {"keys": keys}


_container: Container | None = None
_container_lock = threading.Lock()  # `chalice local` serves requests on threads; Lambda does not


def get_container() -> Container:
    global _container  # one composition root per Lambda container, by design
    if _container is None:
        with _container_lock:
            if _container is None:
                _container = Container()
    return _container


def reset() -> None:
    """Forget every built object and the cached settings (tests, and nothing else)."""
    global _container
    _container = None
    get_settings.cache_clear()

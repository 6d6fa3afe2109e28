"""Service settings, read from the environment lazily.

Never read at import time: Chalice's test client sets a stage's environment only while a request
runs, and cold start should not pay for it. ``get_settings()`` caches one instance per container;
tests call ``get_settings.cache_clear()``.

Guards: ``dev``/``prod`` refuse any ``AWS_ENDPOINT_URL*`` override (botocore would otherwise send
every call, credentials included, wherever that variable points), and ``local`` refuses to start
without one (it must never reach a real account). ``dev``/``prod`` also refuse the portal's mTLS
credentials as file paths: there they come only from a Secrets Manager secret.
"""

from __future__ import annotations

import os
import re
from datetime import date
from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, HttpUrl, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Stage = Literal["local", "test", "dev", "prod"]
DEPLOYED_STAGES: frozenset[str] = frozenset({"dev", "prod"})
LOOPBACK_STAGES: frozenset[str] = frozenset({"local", "test"})


# A change to a partner (disabled, keys rotated) reaches every warm container within this many
# seconds at most: the longest the per-container partner cache may keep a document.
PARTNER_CACHE_MAX_TTL_S = 30


def fixed_inquiry_date(value: str) -> date | None:
    """``YYYYMMDD`` as a date; None for anything else (``today`` included)."""
    if not re.fullmatch(r"\d{8}", value, re.ASCII):
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


class SettingsError(ValueError):
    """The environment does not describe a runnable service."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAY_", frozen=True, extra="ignore")

    stage: Stage
    issuer: HttpUrl = Field(description="Our OAuth issuer identifier (RFC 8414); the public base URL.")

    aws_region: str = Field(
        default="ap-northeast-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    aws_endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")

    state_table: str
    partners_table: str
    audit_table: str
    signing_key_id: str = Field(description="KMS key id or alias of the current ES256 signing key.")
    previous_signing_key_ids: tuple[str, ...] = Field(
        default=(),
        description="Keys still published in the JWKS after a rotation, until their tokens expire.",
    )
    data_key_id: str
    pseudonym_key_id: str
    heads_bucket: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="S3 bucket (Object Lock, compliance mode) every signed audit tree head is copied to.",
    )

    # -- Mynaportal (endpoints are configuration: the sandbox locally, the real hosts in AWS) --------
    portal_authorize_url: str | None = None
    portal_token_url: str | None = None
    portal_request_url: str | None = None
    portal_result_url: str | None = None
    # The mTLS credentials: files on the developer's machine (the sandbox's test PKI), a Secrets
    # Manager secret in AWS. Never both, and never a file in a deployed stage: a path there would
    # mean a private key shipped in or beside the package.
    portal_client_cert: str | None = Field(
        default=None, description="PEM path of our mTLS client certificate (local and test stages only)"
    )
    portal_client_key: str | None = Field(
        default=None, description="PEM path of our mTLS client key (local and test stages only)"
    )
    portal_ca_bundle: str | None = Field(
        default=None, description="PEM path trusting the portal's server (local and test stages only)"
    )
    portal_client_secret_id: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^[A-Za-z0-9/_+=.@:\-]+$",
        description=(
            "Secrets Manager secret id/ARN holding the portal mTLS credentials: JSON "
            '{"certificate": PEM chain, "private_key": PEM, "ca_bundle": PEM (optional)}'
        ),
    )
    portal_services: dict[str, str] = Field(
        default_factory=dict,
        description='Approved portal service per dataset: {"local_tax": "SP########_XX####", ...}',
    )
    portal_inquiry_date: str = Field(
        default="today",
        description=(
            "The IF001-04 point-in-time inquiry date: 'today' (Japan's date when the retrieval starts)"
            " or a fixed YYYYMMDD, as integrations pin it for the portal's test environment"
        ),
    )
    portal_mapping_file: str | None = Field(
        default=None,
        description=(
            "Path of the portal mapping (dataset names, field paths, types, required fields; JSON);"
            " unset: the shipped chalicelib/mapping/portal-mapping.json. Validated at start-up."
        ),
    )
    portal_connect_timeout_s: float = Field(default=3.0, gt=0, le=10)
    portal_read_timeout_s: float = Field(default=10.0, gt=0, le=30)

    # -- Flow lifetimes --------------------------------------------------------------------------
    request_uri_lifetime_s: int = Field(default=300, ge=10, lt=600)  # FAPI 2.0: < 600 s
    authorization_code_lifetime_s: int = Field(default=60, ge=5, le=60)  # FAPI 2.0: <= 60 s
    portal_state_lifetime_s: int = Field(default=900, ge=60, le=3600)
    retrieval_deadline_s: int = Field(default=600, ge=60, le=3600)
    # The portal's completion notice is what makes the relay fetch the result [O]; the scheduled
    # poll is only the fallback for a notice that never comes, so its first look waits this long
    # after the retrieval starts (no /result call before the portal has had time to answer).
    # The local and test stages set 0: their sandbox notifies at once and their tests drive the
    # poller directly (docs/delivery.md).
    retrieval_first_poll_s: int = Field(default=60, ge=0, le=600)
    max_result_bytes: int = Field(default=2_000_000, ge=10_000, le=8_000_000)

    # -- Partner documents kept per warm container (chalicelib/adapters/partner_cache.py) --------
    # A change to a partner (disabled, keys rotated) reaches every warm container within this
    # many seconds (docs/operations.md); 30 s at most, 0 reads DynamoDB on every request.
    partner_cache_ttl_s: float = Field(
        default=float(PARTNER_CACHE_MAX_TTL_S), ge=0, le=PARTNER_CACHE_MAX_TTL_S
    )
    partner_cache_size: int = Field(default=256, ge=1, le=10_000)
    audit_retention_days: int = Field(default=7 * 365, ge=30, le=20 * 365)

    aws_connect_timeout_s: float = Field(default=2.0, gt=0, le=10)
    aws_read_timeout_s: float = Field(default=5.0, gt=0, le=30)
    aws_max_attempts: int = Field(default=3, ge=1, le=10)

    @field_validator(
        "aws_endpoint_url",
        "heads_bucket",
        "portal_client_cert",
        "portal_client_key",
        "portal_ca_bundle",
        "portal_client_secret_id",
        "portal_mapping_file",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # An environment variable set to "" (an unset template parameter) means "not configured".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("portal_services")
    @classmethod
    def _portal_service_ids(cls, services: dict[str, str]) -> dict[str, str]:
        # Checked when the service starts, not at the callback: a wrong id would otherwise surface
        # only after a resident had signed in at the portal.
        from chalicelib.adapters.mynaportal_inferred import CLIENT_ID_FORM, is_client_id

        for dataset, service_id in services.items():
            if not is_client_id(service_id):
                raise ValueError(
                    f"portal_services[{dataset!r}] (RELAY_PORTAL_SERVICES) is {service_id[:40]!r},"
                    f" not a Mynaportal service id of the form {CLIENT_ID_FORM}"
                )
        return services

    @field_validator("portal_inquiry_date")
    @classmethod
    def _inquiry_date(cls, value: str) -> str:
        if value != "today" and fixed_inquiry_date(value) is None:
            raise ValueError(
                f"portal_inquiry_date (RELAY_PORTAL_INQUIRY_DATE) is {value[:20]!r}: expected 'today'"
                " or a date as YYYYMMDD (e.g. 20260101)"
            )
        return value

    @property
    def portal_fixed_inquiry_date(self) -> date | None:
        """The pinned inquiry date, or None for Japan's date on the day of each retrieval."""
        return fixed_inquiry_date(self.portal_inquiry_date)

    @model_validator(mode="after")
    def _endpoint_matches_stage(self) -> Settings:
        overrides = sorted(
            name for name, value in os.environ.items() if name.startswith("AWS_ENDPOINT_URL") and value
        )
        if self.stage in DEPLOYED_STAGES and (overrides or self.aws_endpoint_url):
            raise ValueError(
                f"stage {self.stage!r} must reach real AWS endpoints; remove {', '.join(overrides)}"
            )
        if self.stage == "local" and not self.aws_endpoint_url:
            raise ValueError(
                "stage 'local' needs AWS_ENDPOINT_URL (the embedded moto server started by make run)"
            )
        return self

    @model_validator(mode="after")
    def _portal_over_tls_when_deployed(self) -> Settings:
        if self.stage in DEPLOYED_STAGES:
            for name in (
                "portal_authorize_url",
                "portal_token_url",
                "portal_request_url",
                "portal_result_url",
            ):
                value = getattr(self, name)
                if value is not None and not value.startswith("https://"):
                    raise ValueError(f"{name} must be https in stage {self.stage!r}")
        return self

    @model_validator(mode="after")
    def _portal_credentials_from_one_source(self) -> Settings:
        paths = [
            name
            for name in ("portal_client_cert", "portal_client_key", "portal_ca_bundle")
            if getattr(self, name) is not None
        ]
        if paths and self.portal_client_secret_id is not None:
            raise ValueError(
                f"{', '.join(paths)} and portal_client_secret_id are both configured; the portal's"
                " mTLS credentials come from one source (RELAY_PORTAL_CLIENT_SECRET_ID in AWS)"
            )
        if paths and self.stage in DEPLOYED_STAGES:
            raise ValueError(
                f"{', '.join(paths)} must not be set in stage {self.stage!r}: the portal's mTLS"
                " credentials come only from the Secrets Manager secret named by"
                " portal_client_secret_id (RELAY_PORTAL_CLIENT_SECRET_ID), never from a file"
            )
        return self

    @model_validator(mode="after")
    def _portal_mapping_is_usable(self) -> Settings:
        # A broken mapping would fail every flow as unreadable: refuse to start instead, naming the
        # setting (RELAY_PORTAL_MAPPING_FILE) and the problem.
        from chalicelib.domain.portal_mapping import load_mapping

        load_mapping(self.portal_mapping_file)  # MappingError is a ValueError: a SettingsError
        return self

    @property
    def allows_loopback_urls(self) -> bool:
        """``http://localhost``/``127.0.0.1`` partner URLs are acceptable only off AWS."""
        return self.stage in LOOPBACK_STAGES


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this container, validated once."""
    try:
        return Settings()  # type: ignore[call-arg]  # every required field comes from the environment
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc

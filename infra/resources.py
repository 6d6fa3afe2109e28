"""Declarative specifications of every table and KMS key the service uses.

This module is the single source of truth: the local bootstrap creates exactly these resources in
moto, ``.chalice/config.json`` must name exactly these resources for each stage (a test checks it),
and the deployment template is generated from them. It describes; it never calls AWS.

Why three tables: short-lived flow state (minutes, TTL-collected) and long-lived audit (years,
point-in-time recovery, deletion protection) have opposite lifecycles and access rights, so they do
not share a table; partner registrations are long-lived configuration edited by operators only.
See docs/data-model.md for every access pattern.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

APP_NAME = "myna-relay"
STAGES: tuple[str, ...] = ("local", "test", "dev", "prod")

AttributeType = Literal["S", "N", "B"]


@dataclass(frozen=True)
class KeySchema:
    partition_key: str
    sort_key: str | None = None


@dataclass(frozen=True)
class GlobalIndexSpec:
    name: str
    keys: KeySchema
    projection: Literal["ALL", "KEYS_ONLY", "INCLUDE"] = "KEYS_ONLY"
    included: tuple[str, ...] = ()  # the non-key attributes an INCLUDE projection copies

    def projection_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"ProjectionType": self.projection}
        if self.projection == "INCLUDE":
            spec["NonKeyAttributes"] = list(self.included)
        return spec


@dataclass(frozen=True)
class TableSpec:
    """One DynamoDB table. ``logical_name`` is stable across stages; the physical name is derived."""

    logical_name: str
    env_var: str
    keys: KeySchema
    attributes: dict[str, AttributeType]
    ttl_attribute: str | None = None
    indexes: tuple[GlobalIndexSpec, ...] = ()
    point_in_time_recovery: bool = False
    deletion_protection: bool = False
    purpose: str = ""

    def physical_name(self, stage: str) -> str:
        return f"{APP_NAME}-{stage}-{self.logical_name}"

    def key_schema(self) -> list[dict[str, str]]:
        """``KeySchema`` as both DynamoDB's CreateTable and CloudFormation spell it."""
        return _key_schema(self.keys)

    def attribute_definitions(self) -> list[dict[str, str]]:
        return [{"AttributeName": name, "AttributeType": kind} for name, kind in self.attributes.items()]

    def global_secondary_indexes(self) -> list[dict[str, Any]]:
        """``GlobalSecondaryIndexes`` (on demand: no throughput), for the API and the template."""
        return [
            {
                "IndexName": index.name,
                "KeySchema": _key_schema(index.keys),
                "Projection": index.projection_spec(),
            }
            for index in self.indexes
        ]


def _key_schema(keys: KeySchema) -> list[dict[str, str]]:
    schema = [{"AttributeName": keys.partition_key, "KeyType": "HASH"}]
    if keys.sort_key:
        schema.append({"AttributeName": keys.sort_key, "KeyType": "RANGE"})
    return schema


@dataclass(frozen=True)
class KmsKeySpec:
    """One KMS key, always referenced through its alias so that rotation never changes config."""

    logical_name: str
    env_var: str
    key_spec: Literal["ECC_NIST_P256", "SYMMETRIC_DEFAULT", "HMAC_256"]
    key_usage: Literal["SIGN_VERIFY", "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC"]
    purpose: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def alias(self, stage: str) -> str:
        return f"alias/{APP_NAME}-{stage}-{self.logical_name}"


STATE_TABLE = TableSpec(
    logical_name="state",
    env_var="RELAY_STATE_TABLE",
    keys=KeySchema("pk", "sk"),
    attributes={"pk": "S", "sk": "S", "due_shard": "S", "due_at": "N"},
    ttl_attribute="expires_at",
    indexes=(
        # Sparse: only flows waiting for the portal carry due_shard/due_at. The poller queries each
        # shard for due_at <= now, so no single partition key takes every write.
        GlobalIndexSpec("by_due", KeySchema("due_shard", "due_at"), projection="KEYS_ONLY"),
    ),
    purpose="Short-lived flow state: flows, single-use pointers (request_uri, portal state, portal "
    "process id, partner code, access token), the jti replay store and sealed deliveries.",
)

PARTNERS_TABLE = TableSpec(
    logical_name="partners",
    env_var="RELAY_PARTNERS_TABLE",
    keys=KeySchema("partner_id"),
    attributes={"partner_id": "S"},
    point_in_time_recovery=True,
    purpose="Partner registrations (client metadata, public JWKS, purposes); written by operators.",
)

AUDIT_TABLE = TableSpec(
    logical_name="audit",
    env_var="RELAY_AUDIT_TABLE",
    keys=KeySchema("pk", "sk"),
    attributes={
        "pk": "S",
        "sk": "S",
        "day_shard": "S",
        "partner_shard": "S",
    },
    ttl_attribute="retain_until",
    indexes=(
        # Write-sharded (32 shards a day, 32 a partner-month): no key takes more than 1/32 of the
        # writes. Each projects only what its reader needs: a checkpoint reads leaf hashes, a
        # partner's page reads documents.
        GlobalIndexSpec("by_day", KeySchema("day_shard", "sk"), projection="INCLUDE", included=("leaf",)),
        GlobalIndexSpec(
            "by_partner", KeySchema("partner_shard", "sk"), projection="INCLUDE", included=("document",)
        ),
    ),
    point_in_time_recovery=True,
    deletion_protection=True,
    purpose="Provision-history audit records (情報提供等記録 mirror) and signed checkpoints; kept for years.",
)

TABLES: tuple[TableSpec, ...] = (STATE_TABLE, PARTNERS_TABLE, AUDIT_TABLE)

SIGNING_KEY = KmsKeySpec(
    logical_name="signing",
    env_var="RELAY_SIGNING_KEY_ID",
    key_spec="ECC_NIST_P256",
    key_usage="SIGN_VERIFY",
    purpose="ES256 signatures: sealed payloads, webhook events, audit checkpoints; public half in the JWKS.",
)

DATA_KEY = KmsKeySpec(
    logical_name="data",
    env_var="RELAY_DATA_KEY_ID",
    key_spec="SYMMETRIC_DEFAULT",
    key_usage="ENCRYPT_DECRYPT",
    purpose="Encrypts the portal access token (flow id as encryption context) and the tables at rest.",
)

PSEUDONYM_KEY = KmsKeySpec(
    logical_name="pseudonym",
    env_var="RELAY_PSEUDONYM_KEY_ID",
    key_spec="HMAC_256",
    key_usage="GENERATE_VERIFY_MAC",
    purpose="Keyed pseudonym of the resident in audit records (HMAC, never reversible without KMS).",
)

KEYS: tuple[KmsKeySpec, ...] = (SIGNING_KEY, DATA_KEY, PSEUDONYM_KEY)

# Deployed stages only (the service never calls it, so no environment variable names it and the local
# stack has none): what operators read about the service, kept apart from the data key that guards
# tokens and tables (cutting off or rotating one never touches the other).
OPERATIONS_KEY = KmsKeySpec(
    logical_name="operations",
    env_var="",
    key_spec="SYMMETRIC_DEFAULT",
    key_usage="ENCRYPT_DECRYPT",
    purpose="Encrypts the log groups (functions and API access log) and the dead-letter queues.",
)


@dataclass(frozen=True)
class BucketSpec:
    """One S3 bucket. Bucket names are global: a deployed stage's name ends with the account id
    (the template sets it); local and test stages use the bare name in the embedded AWS."""

    logical_name: str
    env_var: str
    object_lock_days: dict[str, int]  # compliance-mode retention of every object, by stage
    purpose: str = ""

    def physical_name(self, stage: str) -> str:
        return f"{APP_NAME}-{stage}-{self.logical_name}"


HEADS_BUCKET = BucketSpec(
    logical_name="audit-heads",
    env_var="RELAY_HEADS_BUCKET",
    # Compliance mode: nobody, the account root included, can delete or overwrite a head before
    # this. prod keeps them one year beyond the records' seven; dev (no real data) 30 days.
    object_lock_days={"local": 1, "test": 1, "dev": 30, "prod": 8 * 365},
    purpose="Every signed audit tree head, write-once (Object Lock, compliance mode): a deleted or "
    "rewritten checkpoint in the audit table is detected against it.",
)

BUCKETS: tuple[BucketSpec, ...] = (HEADS_BUCKET,)


def stage_environment(stage: str) -> dict[str, str]:
    """The resource-naming environment variables the service needs for ``stage``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    env = {table.env_var: table.physical_name(stage) for table in TABLES}
    env.update({key.env_var: key.alias(stage) for key in KEYS})
    if stage in ("local", "test"):  # a deployed stage's bucket name ends with the account id
        env.update({bucket.env_var: bucket.physical_name(stage) for bucket in BUCKETS})
    return env

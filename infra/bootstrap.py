"""Create the tables and keys of ``infra.resources`` in an AWS endpoint, idempotently.

Used against moto only (the local stack and tests). Real accounts get the same resources from the
deployment template. KMS keys are created through the API, never through moto's CloudFormation,
which drops KeySpec/KeyUsage and TTL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra.resources import BUCKETS, KEYS, TABLES, BucketSpec, KmsKeySpec, TableSpec, stage_environment

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_s3.client import S3Client


def ensure_resources(stage: str, dynamodb: DynamoDBClient, kms: KMSClient, s3: S3Client) -> dict[str, str]:
    """Create whatever is missing and return the environment that names the resources."""
    existing_buckets = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
    for bucket in BUCKETS:
        if bucket.physical_name(stage) not in existing_buckets:
            _create_bucket(s3, bucket, stage)
    existing = set(dynamodb.list_tables()["TableNames"])
    for table in TABLES:
        if table.physical_name(stage) not in existing:
            _create_table(dynamodb, table, stage)
    aliases = {alias["AliasName"] for alias in kms.list_aliases()["Aliases"]}
    for key in KEYS:
        if key.alias(stage) not in aliases:
            _create_key(kms, key, stage)
    return stage_environment(stage)


def _create_table(dynamodb: DynamoDBClient, table: TableSpec, stage: str) -> None:
    name = table.physical_name(stage)
    params: dict[str, Any] = {
        "TableName": name,
        "KeySchema": table.key_schema(),
        "AttributeDefinitions": table.attribute_definitions(),
        "BillingMode": "PAY_PER_REQUEST",
        "DeletionProtectionEnabled": table.deletion_protection,
    }
    if table.indexes:
        params["GlobalSecondaryIndexes"] = table.global_secondary_indexes()
    dynamodb.create_table(**params)
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    if table.ttl_attribute:
        # moto stores the setting but never expires items: expiry is enforced in code everywhere.
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )
    if table.point_in_time_recovery:
        dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )


def _create_bucket(s3: S3Client, bucket: BucketSpec, stage: str) -> None:
    """Object Lock can only be turned on when a bucket is created (it turns versioning on too);
    the default retention then locks every object written, in compliance mode."""
    name = bucket.physical_name(stage)
    region = s3.meta.region_name
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True, **location)  # type: ignore[arg-type]
    s3.put_object_lock_configuration(
        Bucket=name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": bucket.object_lock_days[stage]}},
        },
    )
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


def _create_key(kms: KMSClient, key: KmsKeySpec, stage: str) -> None:
    created = kms.create_key(
        KeySpec=key.key_spec,
        KeyUsage=key.key_usage,
        Description=f"{key.logical_name} ({stage}): {key.purpose}",
        Tags=[{"TagKey": "app", "TagValue": "myna-relay"}, {"TagKey": "stage", "TagValue": stage}],
    )
    kms.create_alias(AliasName=key.alias(stage), TargetKeyId=created["KeyMetadata"]["KeyId"])

"""Reading the packaged template the way CloudFormation and IAM would, for the deployment tests.

- ``Resolver`` evaluates the intrinsic functions the template uses (``Ref``, ``Fn::GetAtt``,
  ``Fn::Sub``, ``Fn::If``) and the ``{{resolve:ssm:...}}`` dynamic references (from SSM in moto).
- ``create_stack_resources`` creates the template's tables, keys and aliases through the DynamoDB
  and KMS APIs of moto, property by property. moto's own CloudFormation is not used: it drops
  TTL and the keys' KeySpec/KeyUsage, and does not run the SAM transform.
- ``allowed`` is a small IAM evaluator (Allow statements, ``*``/``?`` wildcards in actions and
  resources), enough to ask whether a role's policy permits one call on one resource.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"  # moto's default account
PARTITION = "aws"
SSM_REFERENCE = re.compile(r"\{\{resolve:ssm:([^}:]+)\}\}")


@dataclass
class Resolver:
    region: str
    stack_name: str
    physical: dict[str, dict[str, str]] = field(default_factory=dict)  # logical id -> {"Ref", "Arn"}
    conditions: dict[str, bool] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    ssm: Callable[[str], str] | None = None

    def pseudo(self) -> dict[str, str]:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": PARTITION,
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }

    def _name(self, name: str) -> str:
        if name in self.pseudo():
            return self.pseudo()[name]
        if name in self.parameters:
            return self.parameters[name]
        logical, _, attribute = name.partition(".")
        return self.physical[logical][attribute or "Ref"]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            if self.ssm is not None:
                return SSM_REFERENCE.sub(lambda match: self.ssm(match.group(1)) if self.ssm else "", value)
            return value
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return self._name(value["Ref"])
        if set(value) == {"Fn::GetAtt"}:
            logical, attribute = value["Fn::GetAtt"]
            return self.physical[logical][attribute]
        if set(value) == {"Fn::Sub"}:
            return re.sub(r"\$\{([^}]+)\}", lambda match: self._name(match.group(1)), value["Fn::Sub"])
        if set(value) == {"Fn::If"}:
            condition, when_true, when_false = value["Fn::If"]
            return self.resolve(when_true if self.conditions[condition] else when_false)
        return {key: self.resolve(item) for key, item in value.items()}


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


def create_stack_resources(
    template: dict[str, Any], resolver: Resolver, dynamodb: Any, kms: Any, s3: Any
) -> None:
    """Keys and aliases first (the tables are encrypted with one), then the tables and buckets (and the
    dead-letter queues' names)."""
    for logical, body in resources_of(template, "AWS::KMS::Key").items():
        props = resolver.resolve(body["Properties"])
        created = kms.create_key(
            KeySpec=props["KeySpec"],
            KeyUsage=props["KeyUsage"],
            Description=props["Description"],
            Policy=json.dumps(props["KeyPolicy"]),
            Tags=[{"TagKey": tag["Key"], "TagValue": tag["Value"]} for tag in props["Tags"]],
        )["KeyMetadata"]
        if props.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=created["KeyId"])
        resolver.physical[logical] = {"Ref": created["KeyId"], "Arn": created["Arn"]}
    for logical, body in resources_of(template, "AWS::KMS::Alias").items():
        props = resolver.resolve(body["Properties"])
        kms.create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
        resolver.physical[logical] = {"Ref": props["AliasName"]}
    for logical, body in resources_of(template, "AWS::DynamoDB::Table").items():
        props = resolver.resolve(body["Properties"])
        params = {
            name: props[name]
            for name in (
                "TableName",
                "BillingMode",
                "KeySchema",
                "AttributeDefinitions",
                "GlobalSecondaryIndexes",
                "DeletionProtectionEnabled",
            )
            if name in props
        }
        sse = props["SSESpecification"]
        params["SSESpecification"] = {
            "Enabled": sse["SSEEnabled"],
            "SSEType": sse["SSEType"],
            "KMSMasterKeyId": sse["KMSMasterKeyId"],
        }
        params["Tags"] = props["Tags"]
        table = dynamodb.create_table(**params)["TableDescription"]
        if "TimeToLiveSpecification" in props:
            dynamodb.update_time_to_live(
                TableName=props["TableName"], TimeToLiveSpecification=props["TimeToLiveSpecification"]
            )
        if props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]:
            dynamodb.update_continuous_backups(
                TableName=props["TableName"],
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        resolver.physical[logical] = {"Ref": table["TableName"], "Arn": table["TableArn"]}
    for logical, body in resources_of(template, "AWS::S3::Bucket").items():
        props = resolver.resolve(body["Properties"])
        name = props["BucketName"]
        s3.create_bucket(
            Bucket=name,
            ObjectLockEnabledForBucket=props["ObjectLockEnabled"],
            CreateBucketConfiguration={"LocationConstraint": resolver.region},
        )
        s3.put_object_lock_configuration(
            Bucket=name, ObjectLockConfiguration=props["ObjectLockConfiguration"]
        )
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
        resolver.physical[logical] = {"Ref": name, "Arn": f"arn:{PARTITION}:s3:::{name}"}
    for logical in resources_of(template, "AWS::SQS::Queue"):
        # The dead-letter queues: named in the roles' policies, never sent to by a flow (only a
        # scheduled invocation failing after Lambda's retries is), so only their names are made up.
        name = f"{resolver.stack_name}-{logical}-X1Y2Z3"
        resolver.physical[logical] = {
            "Ref": f"https://sqs.{resolver.region}.amazonaws.com/{ACCOUNT}/{name}",
            "Arn": f"arn:{PARTITION}:sqs:{resolver.region}:{ACCOUNT}:{name}",
        }


# -- IAM ---------------------------------------------------------------------------------------------


def _matches(pattern: str, value: str) -> bool:
    # IAM wildcards: * any run of characters, ? one character (fnmatch's [] never occurs in ARNs)
    return fnmatch.fnmatchcase(value, pattern)


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allowed(policy: dict[str, Any], action: str, resource: str) -> bool:
    """True when an Allow statement without conditions covers ``action`` on ``resource``."""
    return any(
        statement["Effect"] == "Allow"
        and "Condition" not in statement
        and any(_matches(pattern.lower(), action.lower()) for pattern in _listed(statement["Action"]))
        and any(_matches(pattern, resource) for pattern in _listed(statement["Resource"]))
        for statement in policy["Statement"]
    )


TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def dynamodb_permissions(
    operation: str, params: dict[str, Any], table_arn: Callable[[str], str]
) -> Iterable[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs one DynamoDB call is authorised as."""
    if operation == "TransactWriteItems":
        for item in params["TransactItems"]:
            ((kind, body),) = item.items()
            yield TRANSACT_ACTIONS[kind], table_arn(body["TableName"])
        return
    if operation in ("BatchGetItem", "BatchWriteItem"):
        for table in params["RequestItems"]:
            yield f"dynamodb:{operation}", table_arn(table)
        return
    arn = table_arn(params["TableName"])
    if params.get("IndexName"):
        arn = f"{arn}/index/{params['IndexName']}"
    yield f"dynamodb:{operation}", arn

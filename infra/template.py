"""The resources ``chalice package`` does not make, generated from the same specifications the
local stack is built from (``infra.resources``, ``infra.deployment``), and merged into Chalice's
SAM template with ``--merge-template`` (a deep merge: these values win).

Chalice makes the functions, their roles (one per function: each has its own policy file), the
REST API and the schedules. This adds:
- the three DynamoDB tables: on demand, encrypted with the stage's data key, TTL, point-in-time
  recovery and deletion protection where the specification asks, retained when the stack goes;
- the three KMS keys with their aliases and key policies (usage only by this stack's roles);
- a log group per function with the stage's retention (Chalice would name the API's wrongly);
- API Gateway stage throttling, with data tracing and execution logging off (they would log
  request bodies: codes, tokens, personal data);
- reserved concurrency, and the settings resolved from SSM plus the portal secret's name in every
  function's environment;
- alarms (5xx rate, poller lag, webhooks failing or abandoned, scheduled function errors) that
  notify an optional SNS topic; and the outputs an operator needs.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.api.errors import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX
from chalicelib.api.middleware import SECURITY_HEADERS
from infra.deployment import (
    AUDIT_CHECKPOINT,
    FUNCTIONS,
    PROCESS_DUE,
    StageDeployment,
    deployment,
    function_environment,
    portal_secret_arn,
)
from infra.policy import key_logical_id, table_logical_id
from infra.resources import APP_NAME, DATA_KEY, HEADS_BUCKET, KEYS, TABLES, BucketSpec, KmsKeySpec, TableSpec

METRICS_NAMESPACE = "MynaRelay"  # chalicelib.telemetry.METRICS_NAMESPACE (infra never imports chalicelib)
SERVICE_DIMENSION = {"Name": "service", "Value": APP_NAME}
API_STAGE = "api"  # .chalice/config.json api_gateway_stage
# The stack's own roles are named <stack>-<logical id>-<suffix> by CloudFormation.
STACK_ROLES = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-*"
ACCOUNT_ROOT = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}

KEY_USAGE_ACTIONS: dict[str, list[str]] = {
    "SIGN_VERIFY": ["kms:Sign", "kms:GetPublicKey", "kms:DescribeKey"],
    "ENCRYPT_DECRYPT": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
    "GENERATE_VERIFY_MAC": ["kms:GenerateMac", "kms:VerifyMac", "kms:DescribeKey"],
}
KEY_ADMIN_ACTIONS = [
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Delete*",  # DeleteAlias: CloudFormation removes the aliases on stack deletion or rollback
    "kms:Get*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
]


def _tags(stage: str) -> list[dict[str, str]]:
    return [{"Key": "app", "Value": APP_NAME}, {"Key": "stage", "Value": stage}]


def table_resource(table: TableSpec, stage: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "TableName": table.physical_name(stage),
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": table.key_schema(),
        "AttributeDefinitions": table.attribute_definitions(),
        "SSESpecification": {
            "SSEEnabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": {"Fn::GetAtt": [key_logical_id(DATA_KEY.logical_name), "Arn"]},
        },
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": table.point_in_time_recovery},
        "DeletionProtectionEnabled": table.deletion_protection,
        "Tags": _tags(stage),
    }
    if table.ttl_attribute:
        properties["TimeToLiveSpecification"] = {"AttributeName": table.ttl_attribute, "Enabled": True}
    if table.indexes:
        properties["GlobalSecondaryIndexes"] = table.global_secondary_indexes()
    # Long-lived tables (partners, audit) outlive the stack; flow state is minutes old at most.
    policy = "Retain" if table.point_in_time_recovery else "Delete"
    return {
        "Type": "AWS::DynamoDB::Table",
        # RetainExceptOnCreate: a failed first deploy leaves nothing behind to block the retry.
        "DeletionPolicy": f"{policy}ExceptOnCreate" if policy == "Retain" else policy,
        "UpdateReplacePolicy": policy,
        "Properties": properties,
    }


HEADS_BUCKET_ID = "HeadsBucket"


def bucket_resources(bucket: BucketSpec, stage: str) -> dict[str, Any]:
    """The write-once bucket of signed tree heads. Object Lock can only be enabled when a bucket is
    created; compliance mode means nobody, the account's root included, can shorten the retention
    or delete a locked version before it ends, so the stack keeps the bucket when it goes."""
    return {
        HEADS_BUCKET_ID: {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "RetainExceptOnCreate",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": {"Fn::Sub": f"{bucket.physical_name(stage)}-${{AWS::AccountId}}"},
                "ObjectLockEnabled": True,
                "ObjectLockConfiguration": {
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {
                        "DefaultRetention": {"Mode": "COMPLIANCE", "Days": bucket.object_lock_days[stage]}
                    },
                },
                "VersioningConfiguration": {"Status": "Enabled"},
                # Signed heads are public by design (partners fetch them); S3-managed keys suffice.
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "Tags": _tags(stage),
            },
        },
        f"{HEADS_BUCKET_ID}Policy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": HEADS_BUCKET_ID},
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [
                                {"Fn::GetAtt": [HEADS_BUCKET_ID, "Arn"]},
                                {"Fn::Sub": f"${{{HEADS_BUCKET_ID}.Arn}}/*"},
                            ],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                },
            },
        },
    }


def key_policy(key: KmsKeySpec, stage: str) -> dict[str, Any]:
    statements: list[dict[str, Any]] = [
        {
            # Administration through IAM, never use: the account's administrators can manage,
            # rotate and schedule the deletion of the key but not sign, decrypt or MAC with it.
            "Sid": "AccountAdministersTheKey",
            "Effect": "Allow",
            "Principal": {"AWS": ACCOUNT_ROOT},
            "Action": KEY_ADMIN_ACTIONS,
            "Resource": "*",
        },
        {
            # Use only by this stack's function roles, and only what the key type allows; each
            # role's own policy then narrows it to the operations that function makes.
            "Sid": "StackRolesUseTheKey",
            "Effect": "Allow",
            "Principal": {"AWS": ACCOUNT_ROOT},
            "Action": KEY_USAGE_ACTIONS[key.key_usage],
            "Resource": "*",
            "Condition": {"ArnLike": {"aws:PrincipalArn": {"Fn::Sub": STACK_ROLES}}},
        },
    ]
    if key is DATA_KEY:
        via = {"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}
        statements.append(
            {
                # AWS's documented key policy for a customer managed table key: DynamoDB uses the
                # key for any principal of this account that DynamoDB itself authorised, and only
                # through DynamoDB. (A statement naming the account would only delegate to IAM, and
                # the function roles grant no DynamoDB-side KMS use.)
                "Sid": "DynamoDbEncryptsTheTables",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:CreateGrant",
                    "kms:DescribeKey",
                ],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": via, "kms:CallerAccount": {"Ref": "AWS::AccountId"}}
                },
            }
        )
        through_secrets_manager = {
            "kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"},
            "kms:CallerAccount": {"Ref": "AWS::AccountId"},
        }
        # Through Secrets Manager the key protects the portal secret and nothing else.
        portal_secret = {"kms:EncryptionContext:SecretARN": portal_secret_arn(stage)}
        statements.append(
            {
                # The operator stores the portal secret encrypted with this key (any principal of
                # the account may encrypt through Secrets Manager; encrypting reveals nothing) ...
                "Sid": "SecretsManagerEncryptsThePortalSecret",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["kms:GenerateDataKey*", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {"StringEquals": through_secrets_manager, "StringLike": portal_secret},
            }
        )
        statements.append(
            {
                # ... Secrets Manager then checks the caller may use the key by a Decrypt whose
                # encryption context marks it as that check (its result is discarded) ...
                "Sid": "SecretsManagerValidatesKeyAccess",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["kms:Decrypt"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        **through_secrets_manager,
                        "kms:EncryptionContext:SecretVersionId": "RequestToValidateKeyAccess",
                    },
                    "StringLike": portal_secret,
                },
            }
        )
        statements.append(
            {
                # ... and only this stack's roles can have Secrets Manager decrypt it for them.
                "Sid": "SecretsManagerDecryptsThePortalSecret",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["kms:Decrypt"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": through_secrets_manager,
                    "StringLike": portal_secret,
                    "ArnLike": {"aws:PrincipalArn": {"Fn::Sub": STACK_ROLES}},
                },
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def key_resources(key: KmsKeySpec, stage: str) -> dict[str, Any]:
    logical = key_logical_id(key.logical_name)
    properties: dict[str, Any] = {
        "Description": f"{APP_NAME} {stage} {key.logical_name}: {key.purpose}",
        "KeySpec": key.key_spec,
        "KeyUsage": key.key_usage,
        "Enabled": True,
        "PendingWindowInDays": 30,
        "KeyPolicy": key_policy(key, stage),
        "Tags": _tags(stage),
    }
    if key.key_spec == "SYMMETRIC_DEFAULT":
        # Automatic yearly rotation exists for symmetric keys only; the signing and HMAC keys
        # rotate by replacement (docs/deploy.md).
        properties["EnableKeyRotation"] = True
    return {
        logical: {
            "Type": "AWS::KMS::Key",
            "DeletionPolicy": "RetainExceptOnCreate",
            "UpdateReplacePolicy": "Retain",
            "Properties": properties,
        },
        f"{logical}Alias": {
            "Type": "AWS::KMS::Alias",
            "Properties": {"AliasName": key.alias(stage), "TargetKeyId": {"Ref": logical}},
        },
    }


def _alarm(
    description: str,
    *,
    namespace: str,
    metric: str,
    dimensions: list[dict[str, Any]],
    statistic: str,
    threshold: float,
    periods: int = 1,
    period_s: int = 300,
    missing: str = "notBreaching",
) -> dict[str, Any]:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": dimensions,
            "Statistic": statistic,
            "Period": period_s,
            "EvaluationPeriods": periods,
            "DatapointsToAlarm": periods,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": missing,
            "AlarmActions": {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            },
            "OKActions": {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]},
        },
    }


def alarms(spec: StageDeployment) -> dict[str, Any]:
    api = [{"Name": "ApiName", "Value": APP_NAME}, {"Name": "Stage", "Value": API_STAGE}]
    # The relay's own metrics carry the stage they were written by (chalicelib.telemetry): an
    # alarm reads only its own stage's, even with another stage in the same account.
    relay = [SERVICE_DIMENSION, {"Name": "stage", "Value": spec.stage}]
    return {
        "Api5xxRateAlarm": _alarm(
            f"More than {spec.api_5xx_rate:.0%} of API requests answered 5xx for 10 minutes",
            namespace="AWS/ApiGateway",
            metric="5XXError",
            dimensions=api,
            statistic="Average",
            threshold=spec.api_5xx_rate,
            periods=2,
        ),
        "PollerLagAlarm": _alarm(
            f"The most overdue flow waited more than {spec.poller_lag_ms // 1000} s for the scheduled run "
            "(or the run stopped reporting) for 3 minutes",
            namespace=METRICS_NAMESPACE,
            metric="poller_lag",
            dimensions=relay,
            statistic="Maximum",
            threshold=spec.poller_lag_ms,
            periods=3,
            period_s=60,
            missing="breaching",  # no metric means process_due is not running
        ),
        "WebhooksAbandonedAlarm": _alarm(
            "A partner webhook was abandoned after its last retry",
            namespace=METRICS_NAMESPACE,
            metric="webhooks_failed",
            dimensions=[*relay, {"Name": "outcome", "Value": "abandoned"}],
            statistic="Sum",
            threshold=1,
        ),
        "WebhooksFailingAlarm": _alarm(
            "Ten or more webhook sends failed (and will be retried) within 5 minutes",
            namespace=METRICS_NAMESPACE,
            metric="webhooks_failed",
            dimensions=[*relay, {"Name": "outcome", "Value": "retry"}],
            statistic="Sum",
            threshold=10,
        ),
        **{
            f"{function.logical_id}ErrorsAlarm": _alarm(
                f"The scheduled function {function.chalice_name} failed",
                namespace="AWS/Lambda",
                metric="Errors",
                dimensions=[{"Name": "FunctionName", "Value": {"Ref": function.logical_id}}],
                statistic="Sum",
                threshold=1,
            )
            for function in (PROCESS_DUE, AUDIT_CHECKPOINT)
        },
    }


# What API Gateway answers itself (no Lambda involved) is answered like the service: an RFC 9457
# problem with the security headers, never {"message": "Missing Authentication Token"}. A path or
# a method no route has is MISSING_AUTHENTICATION_TOKEN to API Gateway: 404 here (it cannot tell
# the two apart; chalice local, which can, answers 405 with Allow for a known path). The interaction
# id is API Gateway's request id: the sent x-fapi-interaction-id is not validated at this layer, so
# it is never reflected. $context.error.messageString is API Gateway's message as a quoted JSON string.
GATEWAY_PROBLEMS: dict[str, tuple[int | None, str, str, str]] = {
    # response type: (status, or None to keep API Gateway's; problem code; title; detail)
    "MISSING_AUTHENTICATION_TOKEN": (404, "not-found", '"Not found"', '"no such resource or method"'),
    "THROTTLED": (429, "throttled", '"Too many requests"', "$context.error.messageString"),
    "REQUEST_TOO_LARGE": (413, "request-too-large", '"Request too large"', "$context.error.messageString"),
    "INTEGRATION_TIMEOUT": (
        504,
        "gateway-timeout",
        '"Gateway timeout"',
        '"the service did not answer in time"',
    ),
    "DEFAULT_4XX": (None, "gateway-refused", '"$context.error.responseType"', "$context.error.messageString"),
    "DEFAULT_5XX": (None, "gateway-error", '"$context.error.responseType"', '"an unexpected error occurred"'),
}


def gateway_responses() -> dict[str, Any]:
    """SAM's ``GatewayResponses`` of the API (in its definition, so that a change is deployed)."""
    # A static value is written between single quotes and cannot hold one: the CSP ('none') is left
    # out (X-Frame-Options DENY and nosniff still hold for a JSON body).
    headers = {
        name: f"'{value}'"
        for name, value in {"Content-Type": PROBLEM_CONTENT_TYPE, **SECURITY_HEADERS}.items()
        if "'" not in value
    }
    responses: dict[str, Any] = {}
    for response_type, (status, code, title, detail) in GATEWAY_PROBLEMS.items():
        members = [
            f'"type": {json.dumps(PROBLEM_TYPE_PREFIX + code)}',
            f'"title": {title}',
            *([f'"status": {status}'] if status is not None else []),
            f'"detail": {detail}',
            '"interaction_id": "$context.requestId"',
        ]
        response: dict[str, Any] = {
            "ResponseParameters": {"Headers": dict(headers)},
            "ResponseTemplates": {
                PROBLEM_CONTENT_TYPE: "{" + ", ".join(members) + "}",
                "application/json": "{" + ", ".join(members) + "}",
            },
        }
        if status is not None:
            response["StatusCode"] = str(status)
        responses[response_type] = response
    return responses


def extras(stage: str) -> dict[str, Any]:
    """The template fragment merged into ``chalice package``'s output for ``stage``."""
    spec = deployment(stage)
    resources: dict[str, Any] = {}
    for key in KEYS:
        resources.update(key_resources(key, stage))
    for table in TABLES:
        resources[table_logical_id(table.logical_name)] = table_resource(table, stage)
    resources.update(bucket_resources(HEADS_BUCKET, stage))
    environment = {**function_environment(stage), HEADS_BUCKET.env_var: {"Ref": HEADS_BUCKET_ID}}
    for function in FUNCTIONS:
        resources[f"{function.logical_id}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            # kept when the stack goes (incident evidence); they expire by their retention
            "DeletionPolicy": "RetainExceptOnCreate",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{{function.logical_id}}}"},
                "RetentionInDays": spec.log_retention_days,
            },
        }
        resources[function.logical_id] = {
            "Properties": {
                "ReservedConcurrentExecutions": spec.reserved_concurrency[function.chalice_name],
                "Environment": {
                    "Variables": {
                        **environment,
                        # CloudFormation resolves {{resolve:ssm:...}} only when a function's
                        # configuration changes: a new revision makes a deploy pick up new values.
                        "RELAY_SETTINGS_REVISION": {"Ref": "SettingsRevision"},
                    }
                },
            }
        }
    resources["RestAPI"] = {
        "Properties": {
            "MethodSettings": [
                {
                    "ResourcePath": "/*",
                    "HttpMethod": "*",
                    "ThrottlingRateLimit": spec.api_rate_limit,
                    "ThrottlingBurstLimit": spec.api_burst_limit,
                    "MetricsEnabled": True,
                    "DataTraceEnabled": False,
                    "LoggingLevel": "OFF",
                }
            ],
            "Tags": {"app": APP_NAME, "stage": stage},
            "GatewayResponses": gateway_responses(),
        }
    }
    resources.update(alarms(spec))
    outputs: dict[str, Any] = {}
    for table in TABLES:
        logical = table_logical_id(table.logical_name)
        outputs[f"{logical}Name"] = {"Value": {"Ref": logical}}
        outputs[f"{logical}Arn"] = {"Value": {"Fn::GetAtt": [logical, "Arn"]}}
    for key in KEYS:
        logical = key_logical_id(key.logical_name)
        outputs[f"{logical}Arn"] = {"Value": {"Fn::GetAtt": [logical, "Arn"]}}
        outputs[f"{logical}Alias"] = {"Value": key.alias(stage)}
    outputs["HeadsBucketName"] = {"Value": {"Ref": HEADS_BUCKET_ID}}
    outputs["PortalSecretName"] = {"Value": spec.portal_secret_name}
    outputs["SettingsParameterPath"] = {"Value": spec.parameter("")}
    return {
        "Parameters": {
            "SettingsRevision": {
                "Type": "String",
                "Default": "1",
                "Description": "Change it (e.g. to the date) to make a deploy re-read the SSM settings",
                "AllowedPattern": "^[A-Za-z0-9._-]{1,32}$",
            },
            "AlarmTopicArn": {
                "Type": "String",
                "Default": "",
                "Description": "SNS topic that the alarms notify (empty: alarms without notification)",
                "AllowedPattern": "^$|^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$",
            },
        },
        "Conditions": {"HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}},
        "Resources": resources,
        "Outputs": outputs,
    }

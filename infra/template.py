"""The resources ``chalice package`` does not make, generated from the same specifications the
local stack is built from (``infra.resources``, ``infra.deployment``), and merged into Chalice's
SAM template with ``--merge-template`` (a deep merge: these values win).

Chalice makes the functions, their roles (one per function: each has its own policy file), the
REST API and the schedules. This adds:
- the three DynamoDB tables: on demand, encrypted with the stage's data key, TTL, point-in-time
  recovery and deletion protection where the specification asks, retained when the stack goes;
- the three KMS keys with their aliases and key policies (usage only by this stack's roles);
- a log group per function and one for the API's access log, with the stage's retention, encrypted
  with the operations key (Chalice would name the API's wrongly);
- API Gateway stage throttling, with data tracing and execution logging off (they would log
  request bodies: codes, tokens, personal data); an access log without query, headers or body;
  X-Ray tracing on the stage and the functions; the API named after the stage; an optional
  custom domain (parameters ``DomainName``, ``CertificateArn``) that turns the ``execute-api``
  endpoint off;
- a dead-letter queue (SQS, encrypted with the operations key) for each scheduled function;
- ``Metadata`` ``checkov: skip:`` entries, each with its reason, for the checks that do not apply
  (``CHECKOV_SKIPS``; docs/deploy.md section 11 lists them);
- reserved concurrency, and the settings resolved from SSM plus the portal secret's name in every
  function's environment;
- alarms (5xx rate, poller lag, webhooks failing or abandoned, scheduled function errors, dead
  letters waiting) that notify an optional SNS topic; and the outputs an operator needs.
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
    FunctionSpec,
    StageDeployment,
    deployment,
    function_environment,
    portal_secret_arn,
)
from infra.policy import dead_letter_queue_id, key_logical_id, table_logical_id
from infra.resources import (
    APP_NAME,
    DATA_KEY,
    HEADS_BUCKET,
    KEYS,
    OPERATIONS_KEY,
    PSEUDONYM_KEY,
    TABLES,
    BucketSpec,
    KmsKeySpec,
    TableSpec,
)

METRICS_NAMESPACE = "MynaRelay"  # chalicelib.telemetry.METRICS_NAMESPACE (infra never imports chalicelib)
SERVICE_DIMENSION = {"Name": "service", "Value": APP_NAME}
API_STAGE = "api"  # .chalice/config.json api_gateway_stage
# The stack's own roles are named <stack>-<logical id>-<suffix> by CloudFormation.
STACK_ROLES = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-*"
ACCOUNT_ROOT = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
SCHEDULED: tuple[FunctionSpec, ...] = (PROCESS_DUE, AUDIT_CHECKPOINT)  # invoked asynchronously
ACCESS_LOG_GROUP_ID = "ApiAccessLogGroup"
ACCESS_LOG_GROUP_NAME = "/aws/apigateway/${AWS::StackName}/access"  # a Fn::Sub pattern
LOG_GROUP_ARN = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"


def api_name(stage: str) -> str:
    """The REST API's name: two stages in one account are two APIs (and two alarm dimensions)."""
    return f"{APP_NAME}-{stage}"


# The API's access log: one JSON line per request. Only what API Gateway itself knows about the
# request, never what the caller wrote: no path (a receipt or delivery id is in it; the route
# template is), no query string (the portal callback's code and state), no header (user agent,
# authorization, DPoP, cookies, the sent x-fapi-interaction-id), no body. The relay's interaction
# id is a response header, which access logs cannot read: ``functionRequestId`` (the Lambda
# request id) is the ``function_request_id`` of the APIHandler log lines, which carry the
# ``interaction_id``. tests/deploy/test_template.py keeps the variables to an allow-list.
ACCESS_LOG_FIELDS: dict[str, str] = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "functionRequestId": "$context.integration.requestId",
    "xrayTraceId": "$context.xrayTraceId",
    "time": "$context.requestTimeEpoch",
    "method": "$context.httpMethod",
    "route": "$context.resourcePath",
    "protocol": "$context.protocol",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationStatus": "$context.integration.status",
    "integrationLatencyMs": "$context.integration.latency",
    "gatewayError": "$context.error.responseType",
    "wafResponseCode": "$context.wafResponseCode",
    "ip": "$context.identity.sourceIp",
}


def access_log_format() -> str:
    # every value quoted: an empty variable ("-") still leaves valid JSON
    return "{" + ", ".join(f'"{name}": "{variable}"' for name, variable in ACCESS_LOG_FIELDS.items()) + "}"


# Checks of checkov (CloudFormation framework) that do not apply to this design, by resource. Each
# becomes a `checkov: skip:` entry in that resource's Metadata; docs/deploy.md section 11 has the table.
NOT_IN_A_VPC = (
    "CKV_AWS_117",
    "No VPC by design: DynamoDB, KMS, Secrets Manager over public endpoints with TLS and SigV4; the "
    "portal and webhooks are on the Internet (docs/deploy.md section 11)",
)
NO_SECRET_IN_ENVIRONMENT = (
    "CKV_AWS_173",
    "The environment holds names and public settings only (tables, key aliases, URLs, the secret's "
    "name), never a secret; Lambda encrypts it at rest with its own key",
)
CHECKOV_SKIPS: dict[str, tuple[tuple[str, str], ...]] = {
    "APIHandler": (
        (
            "CKV_AWS_116",
            "Invoked synchronously by API Gateway only: a dead-letter queue receives asynchronous "
            "invocations; a failure is the caller's 5xx, counted by Api5xxRateAlarm",
        ),
        NOT_IN_A_VPC,
        NO_SECRET_IN_ENVIRONMENT,
    ),
    **{function.logical_id: (NOT_IN_A_VPC, NO_SECRET_IN_ENVIRONMENT) for function in SCHEDULED},
    "RestAPI": (
        (
            "CKV_AWS_120",
            "No caching: every answer is for one caller and one moment (tokens, single-use codes, "
            "no-store); a cache could serve one caller's answer to another",
        ),
    ),
    key_logical_id(DATA_KEY.logical_name): (
        (
            "CKV_AWS_33",
            "Principal * only with kms:CallerAccount (this account) and kms:ViaService (DynamoDB or "
            "Secrets Manager in this region; the portal secret's ARN as encryption context): AWS's "
            "documented policy for a table key",
        ),
    ),
    key_logical_id(PSEUDONYM_KEY.logical_name): (
        (
            "CKV_AWS_7",
            "An HMAC_256 key: KMS rotates symmetric encryption keys only; this one rotates by "
            "replacement (docs/deploy.md section 7)",
        ),
    ),
    "StateTable": (
        (
            "CKV_AWS_28",
            "Flow state lives minutes (TTL); a restore would bring back expired single-use codes. "
            "partners and audit have point-in-time recovery",
        ),
    ),
    "HeadsBucket": (
        (
            "CKV_AWS_18",
            "Write-once (Object Lock compliance), written only by AuditCheckpoint's role; object "
            "access is recorded by CloudTrail S3 data events, not a second bucket",
        ),
    ),
}

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
    if key is OPERATIONS_KEY:
        statements.extend(operations_key_statements())
    return {"Version": "2012-10-17", "Statement": statements}


def operations_key_statements() -> list[dict[str, Any]]:
    log_groups = [
        {"Fn::Sub": f"{LOG_GROUP_ARN}/aws/lambda/${{AWS::StackName}}-{function.logical_id}-*"}
        for function in FUNCTIONS
    ]
    log_groups.append({"Fn::Sub": LOG_GROUP_ARN + ACCESS_LOG_GROUP_NAME})
    return [
        {
            # CloudWatch Logs encrypts and decrypts the stack's log groups, and only them (the
            # encryption context names the log group); readers need no KMS permission of their own.
            "Sid": "CloudWatchLogsEncryptsTheLogGroups",
            "Effect": "Allow",
            "Principal": {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}},
            "Action": [
                "kms:Encrypt*",
                "kms:Decrypt*",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:Describe*",
            ],
            "Resource": "*",
            "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
        },
        {
            # Operators whose IAM policy allows kms:Decrypt on this key can read the dead-letter
            # queues, through SQS only (the functions' roles send with StackRolesUseTheKey).
            "Sid": "OperatorsReadTheDeadLetters",
            "Effect": "Allow",
            "Principal": {"AWS": ACCOUNT_ROOT},
            "Action": ["kms:Decrypt"],
            "Resource": "*",
            "Condition": {
                "StringEquals": {
                    "kms:ViaService": {"Fn::Sub": "sqs.${AWS::Region}.amazonaws.com"},
                    "kms:CallerAccount": {"Ref": "AWS::AccountId"},
                }
            },
        },
    ]


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
    api = [{"Name": "ApiName", "Value": api_name(spec.stage)}, {"Name": "Stage", "Value": API_STAGE}]
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
        "UnreadableResultAlarm": _alarm(
            "A portal result could not be read (result.unreadable): the portal mapping"
            " (RELAY_PORTAL_MAPPING_FILE) no longer fits what the portal sends; results_unreadable"
            " names the dataset and the path",
            namespace=METRICS_NAMESPACE,
            metric="flows_failed",
            dimensions=[*relay, {"Name": "reason", "Value": "result.unreadable"}],
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


def log_group(name: str, spec: StageDeployment) -> dict[str, Any]:
    """A log group (``name`` a ``Fn::Sub`` pattern) with the stage's retention, encrypted with the
    operations key, kept when the stack goes (incident evidence); it expires by its retention."""
    return {
        "Type": "AWS::Logs::LogGroup",
        "DeletionPolicy": "RetainExceptOnCreate",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "LogGroupName": {"Fn::Sub": name},
            "RetentionInDays": spec.log_retention_days,
            "KmsKeyId": {"Fn::GetAtt": [key_logical_id(OPERATIONS_KEY.logical_name), "Arn"]},
        },
    }


def dead_letter_resources(spec: StageDeployment) -> dict[str, Any]:
    """A queue per scheduled function for the invocations that still fail after Lambda's two retries,
    kept 14 days (SQS's longest), and an alarm as soon as one waits there."""
    resources: dict[str, Any] = {}
    for function in SCHEDULED:
        queue = dead_letter_queue_id(function)
        resources[queue] = {
            "Type": "AWS::SQS::Queue",
            # replay or discard what waits there before deleting the stack (docs/deploy.md section 6)
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "MessageRetentionPeriod": 14 * 24 * 3600,
                "KmsMasterKeyId": {"Fn::GetAtt": [key_logical_id(OPERATIONS_KEY.logical_name), "Arn"]},
                "KmsDataKeyReusePeriodSeconds": 300,
                "Tags": _tags(spec.stage),
            },
        }
        resources[f"{queue}Alarm"] = _alarm(
            f"A scheduled {function.chalice_name} invocation failed after Lambda's retries and waits in "
            "its dead-letter queue (docs/deploy.md section 6: replay or discard it)",
            namespace="AWS/SQS",
            metric="ApproximateNumberOfMessagesVisible",
            dimensions=[{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}],
            statistic="Maximum",
            threshold=1,
        )
    return resources


CUSTOM_DOMAIN_ID = "CustomDomain"


def custom_domain_resources(stage: str) -> dict[str, Any]:
    """With the ``DomainName`` parameter: a REGIONAL custom domain mapped at its root to the API's
    stage (the pages use root-relative paths; docs/deploy.md section 5)."""
    return {
        CUSTOM_DOMAIN_ID: {
            "Type": "AWS::ApiGateway::DomainName",
            "Condition": "HasCustomDomain",
            "Properties": {
                "DomainName": {"Ref": "DomainName"},
                "RegionalCertificateArn": {"Ref": "CertificateArn"},
                "EndpointConfiguration": {"Types": ["REGIONAL"]},
                "SecurityPolicy": "TLS_1_2",
                "Tags": _tags(stage),
            },
        },
        f"{CUSTOM_DOMAIN_ID}Mapping": {
            "Type": "AWS::ApiGateway::BasePathMapping",
            "Condition": "HasCustomDomain",
            "Properties": {
                "DomainName": {"Ref": CUSTOM_DOMAIN_ID},
                "RestApiId": {"Ref": "RestAPI"},
                "Stage": {"Ref": "RestAPI.Stage"},  # SAM's reference to the stage it creates
            },
        },
    }


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
    resources.update(key_resources(OPERATIONS_KEY, stage))
    resources.update(dead_letter_resources(spec))
    resources[ACCESS_LOG_GROUP_ID] = log_group(ACCESS_LOG_GROUP_NAME, spec)
    for function in FUNCTIONS:
        resources[f"{function.logical_id}LogGroup"] = log_group(
            f"/aws/lambda/${{{function.logical_id}}}", spec
        )
        resources[function.logical_id] = {
            "Properties": {
                # Active tracing: Lambda's own segments only (the code adds no subsegment and no
                # annotation), as the API stage's trace continues into the function.
                "Tracing": "Active",
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
        if function in SCHEDULED:
            resources[function.logical_id]["Properties"]["DeadLetterQueue"] = {
                "Type": "SQS",
                "TargetArn": {"Fn::GetAtt": [dead_letter_queue_id(function), "Arn"]},
            }
    resources["RestAPI"] = {
        "Properties": {
            "Name": api_name(stage),
            "DefinitionBody": {"info": {"title": api_name(stage)}},
            # with a custom domain, its host name (the one the issuer names) is the only way in
            "DisableExecuteApiEndpoint": {"Fn::If": ["HasCustomDomain", True, False]},
            "TracingEnabled": True,
            "AccessLogSetting": {
                "DestinationArn": {"Fn::Sub": LOG_GROUP_ARN + f"${{{ACCESS_LOG_GROUP_ID}}}"},
                "Format": access_log_format(),
            },
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
    resources.update(custom_domain_resources(stage))
    for logical, skips in CHECKOV_SKIPS.items():
        resources.setdefault(logical, {}).setdefault("Metadata", {})["checkov"] = {
            "skip": [{"id": check, "comment": why} for check, why in skips]
        }
    outputs: dict[str, Any] = {}
    for table in TABLES:
        logical = table_logical_id(table.logical_name)
        outputs[f"{logical}Name"] = {"Value": {"Ref": logical}}
        outputs[f"{logical}Arn"] = {"Value": {"Fn::GetAtt": [logical, "Arn"]}}
    for key in (*KEYS, OPERATIONS_KEY):
        logical = key_logical_id(key.logical_name)
        outputs[f"{logical}Arn"] = {"Value": {"Fn::GetAtt": [logical, "Arn"]}}
        outputs[f"{logical}Alias"] = {"Value": key.alias(stage)}
    outputs["HeadsBucketName"] = {"Value": {"Ref": HEADS_BUCKET_ID}}
    outputs["PortalSecretName"] = {"Value": spec.portal_secret_name}
    outputs["SettingsParameterPath"] = {"Value": spec.parameter("")}
    outputs["ApiAccessLogGroupName"] = {"Value": {"Ref": ACCESS_LOG_GROUP_ID}}
    for function in SCHEDULED:
        queue = dead_letter_queue_id(function)
        outputs[f"{queue}Url"] = {"Value": {"Ref": queue}}
    # the Route 53 alias target of the custom domain
    outputs["CustomDomainTarget"] = {
        "Condition": "HasCustomDomain",
        "Value": {"Fn::GetAtt": [CUSTOM_DOMAIN_ID, "RegionalDomainName"]},
    }
    outputs["CustomDomainHostedZoneId"] = {
        "Condition": "HasCustomDomain",
        "Value": {"Fn::GetAtt": [CUSTOM_DOMAIN_ID, "RegionalHostedZoneId"]},
    }
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
            "DomainName": {
                "Type": "String",
                "Default": "",
                "Description": "The relay's public host name, e.g. relay.bank.example (empty: no custom "
                "domain, the execute-api endpoint stays on)",
                "AllowedPattern": "^$|^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$",
            },
            "CertificateArn": {
                "Type": "String",
                "Default": "",
                "Description": "ACM certificate for DomainName, in the stack's region (with DomainName)",
                "AllowedPattern": "^$|^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$",
            },
        },
        "Conditions": {
            "HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]},
            "HasCustomDomain": {"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]},
        },
        "Rules": {
            "CustomDomainHasACertificate": {
                "RuleCondition": {"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]},
                "Assertions": [
                    {
                        "Assert": {"Fn::Not": [{"Fn::Equals": [{"Ref": "CertificateArn"}, ""]}]},
                        "AssertDescription": "DomainName needs CertificateArn (an ACM certificate in this region)",
                    }
                ],
            }
        },
        "Resources": resources,
        "Outputs": outputs,
    }

"""Least-privilege IAM policies, one per deployed stage and Lambda function.

``"autogen_policy": false`` in .chalice/config.json: Chalice's generator reads only app.py and
grants ``"Resource": "*"``. Each function instead gets ``.chalice/policy-<stage>-<function>.json``,
generated from the grants below (``python -m infra.policy`` rewrites them; a test fails when a
committed file differs). Every grant names the action the code makes and the exact resource: a
table or one of its indexes, a key, the portal secret, the function's own log group. The
resources are CloudFormation expressions (``Fn::GetAtt``/``Fn::Sub``) resolved inside the packaged
template, so the policy names the very table and key that template creates.

DynamoDB has no IAM action for TransactWriteItems: each item of a transaction is authorised as
its PutItem, UpdateItem, DeleteItem or ConditionCheckItem on its table.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from infra.deployment import (
    API_HANDLER,
    AUDIT_CHECKPOINT,
    DEPLOYED_STAGES,
    FUNCTIONS,
    PROCESS_DUE,
    FunctionSpec,
    portal_secret_arn,
)
from infra.resources import (
    AUDIT_TABLE,
    DATA_KEY,
    OPERATIONS_KEY,
    PARTNERS_TABLE,
    PSEUDONYM_KEY,
    SIGNING_KEY,
    STATE_TABLE,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / ".chalice"

Target = Literal[
    "state",
    "state/index/by_due",
    "partners",
    "audit",
    "audit/index/by_day",
    "audit/index/by_partner",
    "signing",
    "data",
    "pseudonym",
    "portal-secret",
    "heads",
    "logs",
    "dead-letters",
    "operations",
    "xray",
]


@dataclass(frozen=True)
class Grant:
    target: Target
    actions: tuple[str, ...]
    why: str


FLOW_STATE = Grant(
    "state",
    ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"),
    "flows, processId pointers, replay store, sealed deliveries, webhook outbox (conditional writes;"
    " Delete inside transactions)",
)
PARTNER_READ = Grant("partners", ("dynamodb:GetItem",), "the partner registration on each partner request")
AUDIT_APPEND = Grant("audit", ("dynamodb:PutItem",), "audit records, inside the step's transaction")
SIGN = Grant("signing", ("kms:Sign", "kms:GetPublicKey"), "ES256 signatures; the public key for kid and JWKS")
PORTAL_SECRET = Grant(
    "portal-secret", ("secretsmanager:GetSecretValue",), "the portal mTLS certificate and key"
)
KEYRING_READ = Grant(
    "state",
    ("dynamodb:BatchGetItem",),
    "a flow with its sealed delivery (pickup); the keyring's wrapped working keys: this and the next"
    " hour's event keys (signing), and the JWKS",
)
LOGS = Grant(
    "logs", ("logs:CreateLogStream", "logs:PutLogEvents"), "its own log group (created by the template)"
)

# X-Ray has no resource-level permissions for these two actions: "Resource": "*" is the only form.
TRACES = Grant(
    "xray",
    ("xray:PutTraceSegments", "xray:PutTelemetryRecords"),
    "Lambda's active tracing (the invocation's segments; the code adds none)",
)
# A scheduled (asynchronous) invocation that still fails after Lambda's retries is sent, as the
# function's role, to its dead-letter queue, which SQS encrypts with the operations key.
DEAD_LETTERS = (
    Grant("dead-letters", ("sqs:SendMessage",), "a scheduled invocation that failed after Lambda's retries"),
    Grant(
        "operations",
        ("kms:GenerateDataKey", "kms:Decrypt"),
        "SQS encrypts the dead letter with the operations key as the sender",
    ),
)

GRANTS: dict[str, tuple[Grant, ...]] = {
    API_HANDLER.chalice_name: (
        FLOW_STATE,
        PARTNER_READ,
        Grant(
            "audit",
            ("dynamodb:PutItem", "dynamodb:Query", "dynamodb:GetItem", "dynamodb:BatchGetItem"),
            "audit records; a flow's records, the latest head and the tiles of proofs (receipts, partners)",
        ),
        Grant("audit/index/by_partner", ("dynamodb:Query",), "the partner audit endpoint (its own month)"),
        KEYRING_READ,
        SIGN,
        Grant(
            "data",
            ("kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"),
            "the keyring: makes the token and receipt keys, wraps event keys, unwraps each once per "
            "container; decrypts a portal token KMS encrypted before the keyring",
        ),
        Grant(
            "pseudonym",
            ("kms:GenerateMac",),
            "checks receipt links made before the keyring (remove 30 days after the upgrade)",
        ),
        PORTAL_SECRET,
        LOGS,
        TRACES,
    ),
    PROCESS_DUE.chalice_name: (
        FLOW_STATE,
        Grant("state/index/by_due", ("dynamodb:Query",), "the flows and webhooks due now"),
        PARTNER_READ,
        AUDIT_APPEND,
        KEYRING_READ,
        SIGN,
        Grant(
            "data",
            ("kms:Encrypt", "kms:Decrypt"),
            "the keyring: wraps a new event key, unwraps the token and event keys once per container",
        ),
        PORTAL_SECRET,
        LOGS,
        TRACES,
        *DEAD_LETTERS,
    ),
    AUDIT_CHECKPOINT.chalice_name: (
        Grant(
            "audit",
            (
                "dynamodb:Query",
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:PutItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:Scan",
            ),
            "the latest head and edge tiles; the head, keys and tiles (one transaction); leaf indexes; "
            "the very first checkpoint of a log scans once for its first day",
        ),
        Grant("audit/index/by_day", ("dynamodb:Query",), "the records after the last checkpoint, by shard"),
        Grant("heads", ("s3:PutObject", "s3:GetObject"), "each signed head into the write-once bucket"),
        SIGN,
        LOGS,
        TRACES,
        *DEAD_LETTERS,
    ),
}

TABLE_IDS = {
    "state": STATE_TABLE.logical_name,
    "partners": PARTNERS_TABLE.logical_name,
    "audit": AUDIT_TABLE.logical_name,
}
KEY_IDS = {"signing": SIGNING_KEY, "data": DATA_KEY, "pseudonym": PSEUDONYM_KEY, "operations": OPERATIONS_KEY}


def table_logical_id(logical_name: str) -> str:
    return f"{logical_name.capitalize()}Table"


def key_logical_id(logical_name: str) -> str:
    return f"{logical_name.capitalize()}Key"


def dead_letter_queue_id(function: FunctionSpec) -> str:
    """The dead-letter queue of a scheduled function (``infra.template`` creates it)."""
    return f"{function.logical_id}DeadLetters"


def resource(target: Target, stage: str, function: FunctionSpec) -> Any:
    """The CloudFormation expression of one grant's resource."""
    table, _, index = target.partition("/index/")
    if table in TABLE_IDS:
        logical = table_logical_id(TABLE_IDS[table])
        if index:
            return {"Fn::Sub": f"${{{logical}.Arn}}/index/{index}"}
        return {"Fn::GetAtt": [logical, "Arn"]}
    if target in KEY_IDS:
        return {"Fn::GetAtt": [key_logical_id(KEY_IDS[target].logical_name), "Arn"]}
    if target == "portal-secret":
        return portal_secret_arn(stage)
    if target == "dead-letters":
        return {"Fn::GetAtt": [dead_letter_queue_id(function), "Arn"]}
    if target == "xray":
        return "*"
    if target == "heads":  # the template's bucket (infra.template.HEADS_BUCKET_ID), its objects only
        return {"Fn::Sub": "${HeadsBucket.Arn}/checkpoints/*"}
    # The function's name is generated (<stack>-<logical id>-<suffix>); naming its log group by
    # reference would make the role depend on the function that depends on the role.
    return {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
        f"/aws/lambda/${{AWS::StackName}}-{function.logical_id}-*:*"
    }


def policy_document(stage: str, function: FunctionSpec) -> dict[str, Any]:
    statements = []
    for grant in GRANTS[function.chalice_name]:
        words = re.split(
            r"[^A-Za-z0-9]+", f"{grant.target} {' '.join(a.split(':')[1] for a in grant.actions)}"
        )
        statements.append(
            {
                "Sid": "".join(word[:1].upper() + word[1:] for word in words),  # IAM: alphanumeric only
                "Effect": "Allow",
                "Action": list(grant.actions),
                "Resource": resource(grant.target, stage, function),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def policy_file(stage: str, function: FunctionSpec) -> Path:
    return CONFIG_DIR / f"policy-{stage}-{function.chalice_name.replace('_', '-')}.json"


def rendered(stage: str, function: FunctionSpec) -> str:
    return json.dumps(policy_document(stage, function), indent=2) + "\n"


def main(argv: list[str]) -> int:
    """Rewrite every committed policy file from the grants above."""
    del argv
    for stage in DEPLOYED_STAGES:
        for function in FUNCTIONS:
            policy_file(stage, function).write_text(rendered(stage, function), encoding="utf-8")
            print(policy_file(stage, function).relative_to(CONFIG_DIR.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Least privilege, read from the packaged template: each function's role carries only its own
policy file, every statement names exact resources, and no action is granted that the code does
not make. (That each call a flow makes is allowed, on the real ARNs, is checked in
test_deployed_flow.py.)"""

from __future__ import annotations

import ast
import json
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from infra.deployment import AUDIT_CHECKPOINT, DEPLOYED_STAGES, FUNCTIONS, PROCESS_DUE, FunctionSpec
from infra.policy import GRANTS, dead_letter_queue_id, policy_document, policy_file, rendered
from tests.conftest import REPO_ROOT

SERVICES = {"dynamodb": "dynamodb", "kms": "kms", "secretsmanager": "secretsmanager", "s3": "s3"}
# What Lambda does with the function's role, not boto3 calls: log delivery, active tracing's segments,
# and a failed scheduled invocation sent to the dead-letter queue (SQS encrypting it with the
# operations key as the sender).
RUNTIME_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
TRACING_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
DEAD_LETTER_ACTIONS = {"sqs:SendMessage"}
OPERATIONS_KEY_ACTIONS = {"kms:GenerateDataKey", "kms:Decrypt"}
TRANSACTION_ITEMS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


@cache
def operations_by_method() -> dict[str, set[str]]:
    """boto3 method name -> the IAM actions ("service:Operation") it can be."""
    session = botocore.session.get_session()
    found: dict[str, set[str]] = {}
    for prefix, service in SERVICES.items():
        for operation in session.get_service_model(service).operation_names:
            found.setdefault(xform_name(operation), set()).add(f"{prefix}:{operation}")
    return found


@cache
def actions_the_code_makes() -> frozenset[str]:
    """Every AWS action chalicelib's code can make, from its source: client method calls,
    paginators, and the item kinds of its DynamoDB transactions."""
    methods = operations_by_method()
    actions: set[str] = set()
    for path in (REPO_ROOT / "chalicelib").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                if name == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                    actions |= methods.get(str(node.args[0].value), set())
                elif name == "transact_write_items":
                    actions.add("dynamodb:TransactWriteItems")
                elif name in methods and not name.startswith("get_paginator"):
                    actions |= methods[name]
            if isinstance(node, ast.Dict):
                for key in node.keys:
                    if (
                        isinstance(key, ast.Constant)
                        and key.value in TRANSACTION_ITEMS
                        and path.name.startswith("dynamodb_")
                    ):
                        actions.add(f"dynamodb:{TRANSACTION_ITEMS[str(key.value)]}")
    # DynamoDB authorises a transaction item by item; there is no TransactWriteItems action.
    actions.discard("dynamodb:TransactWriteItems")
    return frozenset(actions)


def role_policy(template: dict[str, Any], function: FunctionSpec) -> dict[str, Any]:
    role = template["Resources"][function.role_logical_id]
    (policy,) = role["Properties"]["Policies"]
    document: dict[str, Any] = policy["PolicyDocument"]
    return document


STAGE_FUNCTIONS = pytest.mark.parametrize(
    ("stage", "function"), [(stage, function) for stage in DEPLOYED_STAGES for function in FUNCTIONS]
)


@STAGE_FUNCTIONS
def test_each_function_runs_under_its_own_role_with_its_generated_policy_file(
    templates: dict[str, dict[str, Any]], stage: str, function: FunctionSpec
) -> None:
    template = templates[stage]
    props = template["Resources"][function.logical_id]["Properties"]
    assert props["Role"] == {"Fn::GetAtt": [function.role_logical_id, "Arn"]}
    assert role_policy(template, function) == policy_document(stage, function)
    assert policy_file(stage, function).read_text(encoding="utf-8") == rendered(stage, function)
    assert "ManagedPolicyArns" not in template["Resources"][function.role_logical_id]["Properties"]


@STAGE_FUNCTIONS
def test_no_statement_grants_any_resource_or_any_action(
    templates: dict[str, dict[str, Any]], stage: str, function: FunctionSpec
) -> None:
    for statement in role_policy(templates[stage], function)["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement) == {"Sid", "Effect", "Action", "Resource"}  # no NotAction/NotResource
        if set(statement["Action"]) == TRACING_ACTIONS:
            # X-Ray has no resource-level permission for these two: "*" is the only resource
            assert statement["Resource"] == "*"
            continue
        assert statement["Resource"] != "*"
        assert "*" not in json.dumps(statement["Resource"]).split('"')
        assert isinstance(statement["Resource"], dict), (
            "a resource is a reference to what the template creates"
        )
        for action in statement["Action"]:
            assert "*" not in action, action
        text = json.dumps(statement["Resource"])
        if any(action.startswith(("dynamodb:", "kms:")) for action in statement["Action"]):
            # a table, an index of one, or a key of this template: never a pattern
            assert "Fn::GetAtt" in text or ".Arn}/index/" in text, statement
        if any(action.startswith("secretsmanager:") for action in statement["Action"]):
            assert statement["Resource"]["Fn::Sub"].endswith(f":secret:myna-relay/{stage}/portal-mtls-??????")
        if any(action.startswith("logs:") for action in statement["Action"]):
            assert statement["Resource"]["Fn::Sub"].endswith(
                f"/aws/lambda/${{AWS::StackName}}-{function.logical_id}-*:*"
            )
        if any(action.startswith("sqs:") for action in statement["Action"]):
            # its own dead-letter queue, and only to send to it
            assert statement["Action"] == ["sqs:SendMessage"]
            assert statement["Resource"] == {"Fn::GetAtt": [dead_letter_queue_id(function), "Arn"]}


def test_no_policy_grants_an_action_the_code_does_not_make() -> None:
    # GIVEN every action chalicelib's source can make (read from the code, not from a list)
    made = actions_the_code_makes()
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "kms:Sign", "kms:GenerateDataKey"} <= made
    # THEN every granted action is one of them (or what Lambda does with the role: log delivery,
    # tracing, and the scheduled functions' dead letters, encrypted with the operations key only)
    for function, grants in GRANTS.items():
        for grant in grants:
            runtime = RUNTIME_ACTIONS | TRACING_ACTIONS
            if grant.target in {"dead-letters", "operations"}:
                assert function in {PROCESS_DUE.chalice_name, AUDIT_CHECKPOINT.chalice_name}, function
                runtime = DEAD_LETTER_ACTIONS if grant.target == "dead-letters" else OPERATIONS_KEY_ACTIONS
                assert set(grant.actions) <= runtime, (function, grant)
                continue
            for action in grant.actions:
                assert action in made | runtime, f"{function}: {action} ({grant.why}) is not made by the code"


def test_the_scheduled_functions_cannot_touch_what_only_the_api_needs() -> None:
    def targets(function: FunctionSpec) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for grant in GRANTS[function.chalice_name]:
            found.setdefault(grant.target, set()).update(grant.actions)
        return found

    api, due, checkpoint = (targets(function) for function in FUNCTIONS)
    # the checkpoint signs audit tree heads: no flow state, no partners, no portal, no data key
    assert set(checkpoint) == {
        "audit",
        "audit/index/by_day",
        "heads",
        "signing",
        "logs",
        "xray",
        "dead-letters",
        "operations",
    }
    # the API is invoked synchronously: no dead-letter queue, so no use of the operations key
    assert not {"dead-letters", "operations"} & set(api)
    # only the checkpoint writes heads to the write-once bucket, and it never reads the partner index
    assert "heads" not in api
    assert "heads" not in due
    assert checkpoint["heads"] == {"s3:PutObject", "s3:GetObject"}
    # the poller never makes a data key (portal tokens are encrypted at the callback, receipt links
    # made on the consent page), never checks a receipt link, never reads partner audits; it wraps
    # a new webhook event key (Encrypt) and unwraps the token and event keys (Decrypt)
    assert "pseudonym" not in due
    assert "audit/index/by_partner" not in due
    assert due["data"] == {"kms:Encrypt", "kms:Decrypt"}
    # the API makes the token and receipt keys (GenerateDataKey), wraps event keys (Encrypt) and
    # unwraps each once per container (Decrypt; also a portal token KMS encrypted before the keyring)
    assert api["data"] == {"kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"}
    # the keyring's reads: one BatchGetItem for this and the next hour's event keys, or the JWKS
    assert "dynamodb:BatchGetItem" in api["state"]
    assert "dynamodb:BatchGetItem" in due["state"]
    # no function writes partner registrations: operators do, with relayctl and their own credentials
    for grants in (api, due, checkpoint):
        assert grants.get("partners", set()) <= {"dynamodb:GetItem"}


def test_the_committed_policy_files_are_exactly_the_generated_ones() -> None:
    committed = {path.name for path in (REPO_ROOT / ".chalice").glob("policy-*.json")}
    expected = {policy_file(stage, function).name for stage in DEPLOYED_STAGES for function in FUNCTIONS}
    assert committed == expected
    for stage in DEPLOYED_STAGES:
        for function in FUNCTIONS:
            assert Path(policy_file(stage, function)).read_text(encoding="utf-8") == rendered(
                stage, function
            ), "run `python -m infra.policy`"


def test_the_evaluator_the_flow_test_relies_on_refuses_what_a_policy_does_not_name() -> None:
    # GIVEN the prod API handler's policy, resolved for one account and stack
    from tests.deploy.cloud import Resolver, allowed

    tables = "arn:aws:dynamodb:ap-northeast-1:123456789012:table/myna-relay-prod"
    resolver = Resolver(
        region="ap-northeast-1",
        stack_name="myna-relay-prod",
        physical={
            "StateTable": {"Arn": f"{tables}-state"},
            "PartnersTable": {"Arn": f"{tables}-partners"},
            "AuditTable": {"Arn": f"{tables}-audit"},
            "SigningKey": {"Arn": "arn:aws:kms:ap-northeast-1:123456789012:key/sign"},
            "DataKey": {"Arn": "arn:aws:kms:ap-northeast-1:123456789012:key/data"},
            "PseudonymKey": {"Arn": "arn:aws:kms:ap-northeast-1:123456789012:key/mac"},
        },
    )
    policy = resolver.resolve(policy_document("prod", FUNCTIONS[0]))
    secret = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:myna-relay/prod/portal-mtls"
    # THEN what it names is allowed, and near misses are not
    assert allowed(policy, "dynamodb:GetItem", f"{tables}-state")
    assert not allowed(policy, "dynamodb:GetItem", f"{tables}-dev-state")
    assert not allowed(policy, "dynamodb:PutItem", f"{tables}-partners")
    assert not allowed(policy, "dynamodb:Query", f"{tables}-state/index/by_due")
    assert allowed(policy, "kms:Encrypt", "arn:aws:kms:ap-northeast-1:123456789012:key/data")
    assert not allowed(policy, "kms:Decrypt", "arn:aws:kms:ap-northeast-1:123456789012:key/mac")
    assert not allowed(policy, "kms:ReEncryptFrom", "arn:aws:kms:ap-northeast-1:123456789012:key/data")
    assert allowed(policy, "secretsmanager:GetSecretValue", f"{secret}-AbC123")
    assert not allowed(policy, "secretsmanager:GetSecretValue", f"{secret}-other-AbC123")

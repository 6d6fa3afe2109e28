"""``relayctl --stage dev|prod audit checkpoint`` invokes the stack's own ``AuditCheckpoint``
function instead of signing (the signing key lets only the stack's roles sign).

moto's Lambda runs code in Docker, which these tests do not have: moto is started with
``{"lambda": {"use_docker": False}}`` (its "simple" Lambda backend, which answers without running
anything), and that backend's ``invoke`` is replaced by the relay's real scheduled handler, run by
Chalice's test client with the event relayctl sent. So the whole path is exercised: CloudFormation's
name for the function, the Invoke call as botocore sends it, the event Chalice must accept, the
handler's result or error as Lambda returns it (``X-Amz-Function-Error``), and what relayctl prints.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend

from chalicelib.adapters.dynamodb_state import DynamoStateStore
from relayctl.cli import main
from tests.conftest import REGION
from tests.functional.test_relayctl_audit import audit_record

STACK = "myna-relay-dev"


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[None]:
    """moto without Docker: its Lambda stores functions and answers Invoke without running them."""
    with mock_aws(config={"lambda": {"use_docker": False}}):
        yield


class Invocations:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []


@pytest.fixture
def stack(client: Any, monkeypatch: pytest.MonkeyPatch) -> Invocations:
    """The dev stack in moto with its AuditCheckpoint function; invoking it runs the real handler
    (on the test stage's tables and keys) and answers as Lambda does, an error included."""
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="checkpoint", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    function = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Handler": "app.audit_checkpoint",
            "Runtime": "python3.11",
            "Role": role,
            "Code": {"ZipFile": "unused: moto runs no code"},
        },
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=STACK, TemplateBody=json.dumps({"Resources": {"AuditCheckpoint": function}})
    )
    invocations = Invocations()

    def invoke(
        self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
    ) -> bytes:
        assert function_name.startswith(f"{STACK}-AuditCheckpoint-")
        event = json.loads(body)
        invocations.events.append(event)
        try:
            result = client.lambda_.invoke("audit_checkpoint", event).payload
        except Exception as exc:  # noqa: BLE001  # any unhandled error: answered as Lambda does
            response_headers["x-amz-function-error"] = "Unhandled"
            result = {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": []}
        return json.dumps(result).encode()

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    return invocations


class Run:
    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err


@pytest.fixture
def relayctl() -> Callable[..., Run]:
    def run(*argv: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        status = main(list(argv), out=out, err=err)
        return Run(status, out.getvalue(), err.getvalue())

    return run


def append_records(resources: dict[str, str], dynamodb_client: Any, count: int) -> None:
    store = DynamoStateStore(
        dynamodb_client, resources["RELAY_STATE_TABLE"], audit_table=resources["RELAY_AUDIT_TABLE"]
    )
    start = datetime.now(UTC) - timedelta(minutes=10)
    for n in range(count):
        store.append_audit(audit_record(n, start + timedelta(seconds=n)))


def test_a_deployed_stages_checkpoint_is_signed_by_the_stacks_own_function(
    stack: Invocations, resources: dict[str, str], dynamodb_client: Any, relayctl: Callable[..., Run]
) -> None:
    # GIVEN three audit records, settled, and no checkpoint yet
    append_records(resources, dynamodb_client, 3)
    # WHEN the operator asks for a checkpoint on the deployed stage
    run = relayctl("--stage", "dev", "audit", "checkpoint")
    # THEN the stack's function was invoked once, with a scheduled event, and signed it
    assert run.status == 0, run.err
    (event,) = stack.events
    assert (event["detail-type"], event["source"], event["account"], event["region"]) == (
        "Scheduled Event",
        "aws.events",
        "123456789012",
        REGION,
    )
    assert run.out.startswith(
        "checkpoint 1: 3 records; tree size 3; signed by myna-relay-dev-AuditCheckpoint-"
    )
    verified = relayctl("--stage", "test", "audit", "verify", "--no-anchor")
    assert verified.out.startswith("verified 1 checkpoints covering 3 records"), verified.err
    # AND asked again, the function finds nothing new and says so
    again = relayctl("--stage", "dev", "audit", "checkpoint")
    assert again.status == 0, again.err
    assert again.out.startswith("no records to checkpoint (a record is covered once it is 60 s old); by ")


def test_a_failed_checkpoint_function_fails_the_command_naming_its_error_and_log(
    stack: Invocations,
    resources: dict[str, str],
    dynamodb_client: Any,
    kms_client: Any,
    relayctl: Callable[..., Run],
) -> None:
    # GIVEN records to cover, and the stage's signing key gone (its alias deleted): nothing can sign
    append_records(resources, dynamodb_client, 2)
    kms_client.delete_alias(AliasName=resources["RELAY_SIGNING_KEY_ID"])
    # WHEN the operator asks for a checkpoint
    run = relayctl("--stage", "dev", "audit", "checkpoint")
    # THEN the command fails with the function's error and where to read its log, in one line
    assert run.status == 1, run.out
    assert run.out == "", run.err
    assert run.err.startswith("relayctl: the checkpoint function myna-relay-dev-AuditCheckpoint-"), run.err
    assert "failed (DependencyUnavailable: " in run.err
    assert "see its log /aws/lambda/myna-relay-dev-AuditCheckpoint-" in run.err
    assert len(run.err.splitlines()) == 1


def test_a_stage_whose_stack_is_not_found_is_refused_with_what_to_set(
    resources: dict[str, str], relayctl: Callable[..., Run]
) -> None:
    # GIVEN no stack named myna-relay-prod
    run = relayctl("--stage", "prod", "audit", "checkpoint")
    # THEN nothing is signed here: the command names the stack it looked for and how to name another
    assert run.status == 1
    assert "cannot find AuditCheckpoint in stack myna-relay-prod" in run.err
    assert "set RELAY_STACK_NAME" in run.err

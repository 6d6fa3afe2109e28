"""One onboarding against the resources the packaged prod template defines, created in moto from
the template itself, configured exactly as docs/deploy.md tells an operator (SSM parameters, the
portal secret) and with each function's environment as CloudFormation would resolve it.

It proves that names, keys and ARNs line up: the tables and aliases the functions are told to use
are the ones the template creates, the portal credentials come from the secret, and every AWS call
each function makes is allowed by that function's own role policy on the real ARNs.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest
from joserfc import jwe, jws
from joserfc.jwk import KeySet
from moto import mock_aws

from chalicelib import container
from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
from chalicelib.domain.clock import SystemClock
from chalicelib.domain.registry import PartnerRegistry
from infra.deployment import FUNCTIONS, SSM_SETTINGS, deployment
from infra.resources import KEYS, TABLES
from sandbox.server import SandboxServer, load_services
from scripts.dev import SANDBOX_SERVICES
from tests.conftest import REGION, REPO_ROOT
from tests.deploy.cloud import Resolver, allowed, create_stack_resources, dynamodb_permissions
from tests.deploy.test_iam import role_policy
from tests.fakes import ShiftedClock
from tests.functional.conftest import ISSUER, Journey, location_query
from tests.partner_helpers import Pkce, TestPartner

STAGE = "prod"
STACK = "myna-relay-prod"
SELF_INFO = f"{ISSUER}/v1/self-info"

# which Lambda function the code running now is (None: the test's own setup and checks)
_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("function", default=None)


@dataclass
class Calls:
    """Every AWS call the relay makes, by the function it runs in (a botocore patch)."""

    made: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)

    def of(self, function: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [(service, op, params) for fn, service, op, params in self.made if fn == function]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    recorded = Calls()
    original = botocore.client.BaseClient._make_api_call

    def recording(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        function = _function.get()
        if function is not None:
            recorded.made.append((function, self.meta.service_model.service_name, operation_name, api_params))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    return recorded


@dataclass
class DeployedStack:
    template: dict[str, Any]
    resolver: Resolver
    sandbox: SandboxServer
    env: dict[str, str]
    session: boto3.session.Session
    clock: ShiftedClock


@pytest.fixture
def deployed(
    templates: dict[str, dict[str, Any]],
    aws_credentials: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[DeployedStack]:
    template = templates[STAGE]
    spec = deployment(STAGE)
    sandbox = SandboxServer(
        load_services(SANDBOX_SERVICES, ISSUER), tls_dir=tmp_path / "tls", app_tls=True, deterministic=True
    ).start()
    assert sandbox.tls is not None
    try:
        with mock_aws():
            session = boto3.session.Session(region_name=REGION)
            ssm = session.client("ssm")
            # GIVEN the operator's steps before the first deploy (docs/deploy.md): the settings ...
            endpoints = sandbox.endpoints()
            values = {
                "issuer": ISSUER,
                "portal/authorize-url": endpoints["authorize_url"],
                "portal/token-url": endpoints["token_url"],
                "portal/request-url": endpoints["request_url"],
                "portal/result-url": endpoints["result_url"],
                "portal/services": json.dumps(
                    {"local_tax": "SP00000001_AA0001", "vaccination": "SP00000001_AA0002"}
                ),
            }
            assert set(values) == set(SSM_SETTINGS.values())
            for name, value in values.items():
                ssm.put_parameter(Name=spec.parameter(name), Value=value, Type="String")
            # ... the stack's tables, keys and aliases, created from the template's own definitions ...
            resolver = Resolver(
                region=REGION,
                stack_name=STACK,
                conditions={"HasAlarmTopic": False},
                parameters={"AlarmTopicArn": "", "SettingsRevision": "1"},
                ssm=lambda name: str(ssm.get_parameter(Name=name)["Parameter"]["Value"]),
            )
            create_stack_resources(
                template, resolver, session.client("dynamodb"), session.client("kms"), session.client("s3")
            )
            # ... and the portal secret, encrypted with the stack's data key
            session.client("secretsmanager").create_secret(
                Name=spec.portal_secret_name,
                KmsKeyId=f"alias/myna-relay-{STAGE}-data",
                SecretString=json.dumps(
                    {
                        "certificate": sandbox.tls.client_cert.read_text(encoding="utf-8"),
                        "private_key": sandbox.tls.client_key.read_text(encoding="utf-8"),
                        "ca_bundle": sandbox.tls.ca_cert.read_text(encoding="utf-8"),
                    }
                ),
            )
            # the functions' environment exactly as CloudFormation resolves it
            env = {
                name: str(value)
                for name, value in resolver.resolve(
                    template["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
                ).items()
            }
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            container.reset()
            clock = ShiftedClock()
            monkeypatch.setattr(container, "_container", container.Container(clock=clock))
            yield DeployedStack(template, resolver, sandbox, env, session, clock)
    finally:
        container.reset()
        sandbox.stop()


def register_partner(stack: DeployedStack) -> TestPartner:
    partner = TestPartner()
    store = DynamoPartnerStore(
        stack.session.client("dynamodb"), stack.env["RELAY_PARTNERS_TABLE"], allow_loopback=False
    )
    PartnerRegistry(store, SystemClock(), allow_loopback=False).register(partner.document())
    return partner


@contextmanager
def prod_journey(stack: DeployedStack) -> Iterator[Journey]:
    """A registered partner and a resident's browser (trusting the sandbox's TLS) on the prod stage."""
    from chalice.test import Client

    from app import app

    partner = register_partner(stack)
    partner.clock = stack.clock.timestamp
    assert stack.sandbox.tls is not None
    with Client(app, stage_name=STAGE, project_dir=str(REPO_ROOT)) as client:
        yield Journey(
            client=client,
            partner=partner,
            sandbox=stack.sandbox,
            pkce=Pkce(),
            browser_verify=str(stack.sandbox.tls.ca_cert),
        )


def scheduled_event(client: Any) -> Any:
    return client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[], region=REGION
    )


def arn_of(stack: DeployedStack, service: str, params: dict[str, Any]) -> str:
    if service == "kms":
        return str(stack.session.client("kms").describe_key(KeyId=params["KeyId"])["KeyMetadata"]["Arn"])
    if service == "secretsmanager":
        return str(stack.session.client("secretsmanager").describe_secret(SecretId=params["SecretId"])["ARN"])
    if service == "s3":
        return f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"
    raise AssertionError(f"unexpected service {service}")


def test_one_onboarding_runs_on_the_resources_of_the_packaged_template_within_each_functions_policy(
    deployed: DeployedStack, calls: Calls
) -> None:
    with prod_journey(deployed) as journey:
        client, partner = journey.client, journey.partner
        # WHEN a resident onboards: PAR, consent, the portal (over mutual TLS with the secret's
        # certificate), the token, the portal's completion notice (retrieval and sealing), a
        # scheduled run (nothing left to do but look), the pickup, a checkpoint
        token = _function.set("api_handler")
        try:
            code = journey.to_partner_code()
            issued = journey.redeem(code)
            assert issued.status_code == 200, issued.body
            access_token = json.loads(issued.body)["access_token"]
            (notice,) = deployed.sandbox.portal.due_notices()
            header = {
                "telegramId": notice.telegram_id,
                "telegramType": "IFA0302-R01",
                "mode": notice.mode,
                "processId": notice.process_id,
                "errorCode": "",
            }
            noticed = client.http.post(
                "/portal/notice",
                body=json.dumps({"commonHeader": header}),
                headers={"Content-Type": "application/json"},
            )
            assert noticed.status_code == 200, noticed.body
        finally:
            _function.reset(token)
        token = _function.set("process_due")
        try:
            outcomes = client.lambda_.invoke("process_due", scheduled_event(client)).payload
        finally:
            _function.reset(token)
        token = _function.set("api_handler")
        try:
            proof = partner.dpop("GET", SELF_INFO, access_token=access_token)
            picked = client.http.get(
                "/v1/self-info", headers={"Authorization": f"DPoP {access_token}", "DPoP": proof}
            )
            jwks = json.loads(client.http.get("/.well-known/jwks.json").body)
        finally:
            _function.reset(token)
        deployed.clock.advance(minutes=10)  # the checkpoint covers records once they have settled
        token = _function.set("audit_checkpoint")
        try:
            checkpoint = client.lambda_.invoke("audit_checkpoint", scheduled_event(client)).payload
        finally:
            _function.reset(token)

    # THEN the notice retrieved and sealed the delivery, the scheduled run found nothing left
    assert outcomes == {}
    # (the portal token under the keyring's token key, made by its first use: no KMS Decrypt needed)
    assert ("kms", "GenerateDataKey") in {(service, op) for service, op, _ in calls.of("api_handler")}
    # AND the partner opened its sealed delivery, signed by the stack's signing key
    assert picked.status_code == 200, (outcomes, picked.body)
    decrypted = jwe.decrypt_compact(picked.body.decode(), partner.encryption_key)
    claims = json.loads(jws.deserialize_compact(decrypted.plaintext, KeySet.import_key_set(jwks)).payload)
    assert claims["aud"] == partner.client_id
    assert checkpoint["records"] > 0, checkpoint

    # AND every call each function made is allowed by its own role policy on the real ARNs
    tables = _table_arns(deployed)
    for function in FUNCTIONS:
        policy = deployed.resolver.resolve(role_policy(deployed.template, function))
        made = calls.of(function.chalice_name)
        assert made, f"{function.chalice_name} made no AWS call"
        for service, operation, params in made:
            if service == "dynamodb":
                permissions = list(dynamodb_permissions(operation, params, tables.__getitem__))
            else:
                permissions = [(f"{service}:{operation}", arn_of(deployed, service, params))]
            for action, resource in permissions:
                assert allowed(policy, action, resource), (
                    f"{function.chalice_name}: {action} on {resource} is denied"
                )


def _table_arns(stack: DeployedStack) -> dict[str, str]:
    dynamodb = stack.session.client("dynamodb")
    return {
        table.physical_name(STAGE): str(
            dynamodb.describe_table(TableName=table.physical_name(STAGE))["Table"]["TableArn"]
        )
        for table in TABLES
    }


def test_the_created_resources_carry_the_templates_hardening(deployed: DeployedStack) -> None:
    dynamodb = deployed.session.client("dynamodb")
    kms = deployed.session.client("kms")
    data_key = kms.describe_key(KeyId=f"alias/myna-relay-{STAGE}-data")["KeyMetadata"]["Arn"]
    for table in TABLES:
        name = table.physical_name(STAGE)
        described = dynamodb.describe_table(TableName=name)["Table"]
        assert described["SSEDescription"]["KMSMasterKeyArn"] == data_key
        assert described.get("DeletionProtectionEnabled", False) is table.deletion_protection
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if table.ttl_attribute:
            assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", table.ttl_attribute)
        backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        pitr = backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]
        assert pitr == ("ENABLED" if table.point_in_time_recovery else "DISABLED")
    for key in KEYS:
        metadata = kms.describe_key(KeyId=key.alias(STAGE))["KeyMetadata"]
        assert (metadata["KeySpec"], metadata["KeyUsage"]) == (key.key_spec, key.key_usage)


def test_before_the_portal_secret_exists_only_portal_calls_fail_and_the_partner_is_told(
    deployed: DeployedStack,
) -> None:
    # GIVEN a fresh deployment whose operator has not stored the portal secret yet
    deployed.session.client("secretsmanager").delete_secret(
        SecretId=deployment(STAGE).portal_secret_name, ForceDeleteWithoutRecovery=True
    )
    with prod_journey(deployed) as journey:
        # WHEN a resident starts onboarding: the API answers every step before the portal
        assert journey.push().status_code == 201
        assert journey.show_consent().status_code == 200
        assert journey.decide().status_code == 303
        journey.at_portal()
        # THEN the callback, which needs the portal, sends the resident back with a temporary error
        back = journey.callback()
    assert back.status_code == 303, back.body
    assert location_query(back)["error"] == "temporarily_unavailable"

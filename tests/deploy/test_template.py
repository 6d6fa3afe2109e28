"""The packaged template (``make package STAGE=dev|prod``) holds what infra/ specifies, hardened as a
bank's cloud team expects, and nothing secret."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from infra.deployment import DEPLOYED_STAGES, FUNCTIONS, SSM_SETTINGS, deployment, portal_secret_arn
from infra.package import PackageError, check_zip, package
from infra.policy import dead_letter_queue_id, key_logical_id, table_logical_id
from infra.resources import AUDIT_TABLE, DATA_KEY, KEYS, OPERATIONS_KEY, TABLES, stage_environment
from infra.template import CHECKOV_SKIPS, KEY_USAGE_ACTIONS, SCHEDULED, api_name
from tests.conftest import REPO_ROOT, stage_config_environment
from tests.deploy.cloud import resources_of

STAGES = pytest.mark.parametrize("stage", DEPLOYED_STAGES)


def function_env(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    variables: dict[str, Any] = template["Resources"][logical_id]["Properties"]["Environment"]["Variables"]
    return variables


@STAGES
def test_every_table_of_the_specification_is_on_demand_encrypted_with_the_data_key_and_expiring(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    # GIVEN the packaged template of the stage
    tables = resources_of(templates[stage], "AWS::DynamoDB::Table")
    # THEN it holds exactly the specified tables, each as specified and hardened
    assert set(tables) == {table_logical_id(table.logical_name) for table in TABLES}
    for spec in TABLES:
        body = tables[table_logical_id(spec.logical_name)]
        props = body["Properties"]
        assert props["TableName"] == spec.physical_name(stage)
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert {
            a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]
        } == spec.attributes
        assert props["KeySchema"][0] == {"AttributeName": spec.keys.partition_key, "KeyType": "HASH"}
        assert props["SSESpecification"] == {
            "SSEEnabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": {"Fn::GetAtt": [key_logical_id(DATA_KEY.logical_name), "Arn"]},
        }
        assert (
            props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
            is spec.point_in_time_recovery
        )
        assert props["DeletionProtectionEnabled"] is spec.deletion_protection
        if spec.ttl_attribute:
            assert props["TimeToLiveSpecification"] == {"AttributeName": spec.ttl_attribute, "Enabled": True}
        assert {index["IndexName"] for index in props.get("GlobalSecondaryIndexes", [])} == {
            index.name for index in spec.indexes
        }
        # long-lived tables outlive the stack, but not a failed first deploy (it would block the retry)
        if spec.point_in_time_recovery:
            assert (body["DeletionPolicy"], body["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
        else:
            assert (body["DeletionPolicy"], body["UpdateReplacePolicy"]) == ("Delete", "Delete")
    audit = tables[table_logical_id(AUDIT_TABLE.logical_name)]["Properties"]
    assert audit["DeletionProtectionEnabled"] is True
    assert audit["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


@STAGES
def test_every_key_has_its_spec_its_alias_and_a_policy_that_gives_use_only_to_the_stack_roles(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    template = templates[stage]
    keys = resources_of(template, "AWS::KMS::Key")
    aliases = resources_of(template, "AWS::KMS::Alias")
    assert set(keys) == {key_logical_id(key.logical_name) for key in (*KEYS, OPERATIONS_KEY)}
    for spec in KEYS:
        logical = key_logical_id(spec.logical_name)
        props = keys[logical]["Properties"]
        assert (props["KeySpec"], props["KeyUsage"]) == (spec.key_spec, spec.key_usage)
        assert aliases[f"{logical}Alias"]["Properties"] == {
            "AliasName": spec.alias(stage),
            "TargetKeyId": {"Ref": logical},
        }
        assert props.get("EnableKeyRotation", False) is (spec.key_spec == "SYMMETRIC_DEFAULT")
        assert keys[logical]["DeletionPolicy"] == "RetainExceptOnCreate"
        statements = {statement["Sid"]: statement for statement in props["KeyPolicy"]["Statement"]}
        # administrators cannot use the key
        usage = {"kms:Sign", "kms:Decrypt", "kms:Encrypt", "kms:GenerateMac", "kms:*"}
        assert not usage & set(statements["AccountAdministersTheKey"]["Action"])
        # use: only this stack's roles, only what the key type does
        use = statements["StackRolesUseTheKey"]
        assert use["Action"] == KEY_USAGE_ACTIONS[spec.key_usage]
        assert use["Condition"] == {
            "ArnLike": {
                "aws:PrincipalArn": {
                    "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-*"
                }
            }
        }
        # administrators may delete the aliases (CloudFormation does, on deletion or rollback)
        assert "kms:Delete*" in statements["AccountAdministersTheKey"]["Action"]
        # every other statement is bound to an AWS service acting for this account
        for sid, statement in statements.items():
            if sid not in {"AccountAdministersTheKey", "StackRolesUseTheKey"}:
                equals = statement["Condition"]["StringEquals"]
                assert {"kms:ViaService", "kms:CallerAccount"} <= set(equals)
                assert equals["kms:CallerAccount"] == {"Ref": "AWS::AccountId"}
        if spec is DATA_KEY:
            # DynamoDB's table encryption; through Secrets Manager only the portal secret, stored by
            # the operator (after Secrets Manager's access check) and decrypted for this stack's roles
            assert set(statements) == {
                "AccountAdministersTheKey",
                "StackRolesUseTheKey",
                "DynamoDbEncryptsTheTables",
                "SecretsManagerEncryptsThePortalSecret",
                "SecretsManagerValidatesKeyAccess",
                "SecretsManagerDecryptsThePortalSecret",
            }
            for sid in (
                "SecretsManagerEncryptsThePortalSecret",
                "SecretsManagerValidatesKeyAccess",
                "SecretsManagerDecryptsThePortalSecret",
            ):
                condition = statements[sid]["Condition"]
                assert condition["StringLike"] == {
                    "kms:EncryptionContext:SecretARN": portal_secret_arn(stage)
                }
            validates = statements["SecretsManagerValidatesKeyAccess"]
            assert validates["Action"] == ["kms:Decrypt"]
            assert validates["Condition"]["StringEquals"]["kms:EncryptionContext:SecretVersionId"] == (
                "RequestToValidateKeyAccess"
            )
            decrypt = statements["SecretsManagerDecryptsThePortalSecret"]
            assert decrypt["Action"] == ["kms:Decrypt"]
            assert decrypt["Condition"]["ArnLike"] == use["Condition"]["ArnLike"]
        else:
            assert set(statements) == {"AccountAdministersTheKey", "StackRolesUseTheKey"}


@STAGES
def test_the_functions_name_the_resources_the_template_creates_and_read_the_rest_from_ssm(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    template = templates[stage]
    spec = deployment(stage)
    for function in FUNCTIONS:
        env = function_env(template, function.logical_id)
        # the tables and key aliases infra/ names (and the template creates)
        for name, value in stage_environment(stage).items():
            assert env[name] == value
        assert env["RELAY_STAGE"] == stage
        # per-account settings: resolved from SSM at deploy time, never literal in the package
        for name, parameter in SSM_SETTINGS.items():
            assert env[name] == f"{{{{resolve:ssm:/myna-relay/{stage}/{parameter}}}}}"
        assert env["RELAY_PORTAL_CLIENT_SECRET_ID"] == spec.portal_secret_name
        # a new SettingsRevision makes a deploy re-resolve the SSM references
        assert env["RELAY_SETTINGS_REVISION"] == {"Ref": "SettingsRevision"}
        # no file-based credentials, no endpoint override
        assert not {"RELAY_PORTAL_CLIENT_CERT", "RELAY_PORTAL_CLIENT_KEY", "RELAY_PORTAL_CA_BUNDLE"} & set(
            env
        )
        assert not any(name.startswith("AWS_ENDPOINT_URL") for name in env)
        props = template["Resources"][function.logical_id]["Properties"]
        assert props["ReservedConcurrentExecutions"] == spec.reserved_concurrency[function.chalice_name]
        # every function writes its heads to the write-once bucket the template creates (only the
        # checkpoint's role may)
        assert env["RELAY_HEADS_BUCKET"] == {"Ref": "HeadsBucket"}
        log_group = template["Resources"][f"{function.logical_id}LogGroup"]["Properties"]
        assert log_group == {
            "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{{function.logical_id}}}"},
            "RetentionInDays": spec.log_retention_days,
            "KmsKeyId": {"Fn::GetAtt": ["OperationsKey", "Arn"]},
        }
        # X-Ray: the function's own segments (the code adds no annotation, no subsegment)
        assert props["Tracing"] == "Active"
    # the config's own stage environment agrees with the template's
    config_env = stage_config_environment(stage)
    for name, value in config_env.items():
        assert function_env(template, "APIHandler")[name] == value


@STAGES
def test_functions_are_sized_on_purpose(templates: dict[str, dict[str, Any]], stage: str) -> None:
    # bench/RESULTS.md "audit at scale" shows the checkpoint's headroom at 10^7 leaves in these limits
    resources = templates[stage]["Resources"]
    sizes = {
        logical: (resources[logical]["Properties"]["MemorySize"], resources[logical]["Properties"]["Timeout"])
        for logical in ("APIHandler", "ProcessDue", "AuditCheckpoint")
    }
    assert sizes == {"APIHandler": (1024, 60), "ProcessDue": (1024, 60), "AuditCheckpoint": (512, 120)}


def test_the_heads_bucket_is_write_once_for_longer_than_the_records_live(
    templates: dict[str, dict[str, Any]],
) -> None:
    bucket = templates["prod"]["Resources"]["HeadsBucket"]
    props = bucket["Properties"]
    assert props["ObjectLockEnabled"] is True
    retention = props["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
    assert retention["Mode"] == "COMPLIANCE"
    assert retention["Days"] >= 7 * 365  # the records' retention (RELAY_AUDIT_RETENTION_DAYS default)
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert bucket["DeletionPolicy"] == "RetainExceptOnCreate"
    assert templates["dev"]["Resources"]["HeadsBucket"]["Properties"]["ObjectLockConfiguration"]["Rule"][
        "DefaultRetention"
    ] == {"Mode": "COMPLIANCE", "Days": 30}


@STAGES
def test_the_schedules_run_the_scheduled_functions(templates: dict[str, dict[str, Any]], stage: str) -> None:
    resources = templates[stage]["Resources"]
    schedules = {
        logical: [
            event["Properties"]["Schedule"] for event in resources[logical]["Properties"]["Events"].values()
        ]
        for logical in ("ProcessDue", "AuditCheckpoint")
    }
    assert schedules == {"ProcessDue": ["rate(1 minute)"], "AuditCheckpoint": ["rate(10 minutes)"]}


@STAGES
def test_the_api_stage_is_throttled_and_never_logs_request_bodies(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    spec = deployment(stage)
    api = templates[stage]["Resources"]["RestAPI"]["Properties"]
    (settings,) = api["MethodSettings"]
    assert settings == {
        "ResourcePath": "/*",
        "HttpMethod": "*",
        "ThrottlingRateLimit": spec.api_rate_limit,
        "ThrottlingBurstLimit": spec.api_burst_limit,
        "MetricsEnabled": True,
        "DataTraceEnabled": False,
        "LoggingLevel": "OFF",
    }
    assert api["EndpointConfiguration"] == "REGIONAL"
    # the stage in the API's name: two stages in one account are two APIs (and two 5xx alarms)
    assert api["Name"] == api["DefinitionBody"]["info"]["title"] == api_name(stage) == f"myna-relay-{stage}"
    assert api["TracingEnabled"] is True
    # access log: to the encrypted log group, in the allow-listed format (below)
    access = api["AccessLogSetting"]
    assert access["DestinationArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${ApiAccessLogGroup}"
    }
    group = templates[stage]["Resources"]["ApiAccessLogGroup"]["Properties"]
    assert group == {
        "LogGroupName": {"Fn::Sub": "/aws/apigateway/${AWS::StackName}/access"},
        "RetentionInDays": spec.log_retention_days,
        "KmsKeyId": {"Fn::GetAtt": ["OperationsKey", "Arn"]},
    }
    (five_xx,) = [
        alarm["Properties"]
        for alarm in resources_of(templates[stage], "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"]["MetricName"] == "5XXError"
    ]
    assert {"Name": "ApiName", "Value": api_name(stage)} in five_xx["Dimensions"]


@STAGES
def test_alarms_watch_5xx_poller_lag_webhooks_and_the_scheduled_functions(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    alarms = resources_of(templates[stage], "AWS::CloudWatch::Alarm")
    watched = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()}
    assert watched == {
        ("AWS/ApiGateway", "5XXError"),
        ("MynaRelay", "poller_lag"),
        ("MynaRelay", "webhooks_failed"),
        ("MynaRelay", "flows_failed"),
        ("AWS/Lambda", "Errors"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    }
    # a poller that stops reporting is itself an alarm
    assert alarms["PollerLagAlarm"]["Properties"]["TreatMissingData"] == "breaching"
    # the relay's metrics are read for this stage only: another stage in the account is not counted
    relay = [{"Name": "service", "Value": "myna-relay"}, {"Name": "stage", "Value": stage}]
    assert {
        name: alarm["Properties"]["Dimensions"]
        for name, alarm in alarms.items()
        if alarm["Properties"]["Namespace"] == "MynaRelay"
    } == {
        "PollerLagAlarm": relay,
        "WebhooksAbandonedAlarm": [*relay, {"Name": "outcome", "Value": "abandoned"}],
        "WebhooksFailingAlarm": [*relay, {"Name": "outcome", "Value": "retry"}],
        # one result the mapping could not read: as the delivery emits it (test_unreadable_result)
        "UnreadableResultAlarm": [*relay, {"Name": "reason", "Value": "result.unreadable"}],
    }
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }


@STAGES
def test_the_outputs_name_every_table_key_and_the_endpoint(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    outputs = templates[stage]["Outputs"]
    assert "EndpointURL" in outputs
    for table in TABLES:
        assert {
            f"{table_logical_id(table.logical_name)}Name",
            f"{table_logical_id(table.logical_name)}Arn",
        } <= set(outputs)
    for key in KEYS:
        assert outputs[f"{key_logical_id(key.logical_name)}Alias"] == {"Value": key.alias(stage)}
    assert outputs["PortalSecretName"] == {"Value": deployment(stage).portal_secret_name}


@STAGES
def test_nothing_secret_or_local_is_in_the_template_or_the_zip(
    packaged_dirs: dict[str, Path], stage: str
) -> None:
    text = (packaged_dirs[stage] / "sam.json").read_text(encoding="utf-8")
    for marker in (
        "PRIVATE KEY",
        "BEGIN CERTIFICATE",
        "127.0.0.1",
        "localhost",
        "sandbox",
        "AWS_ENDPOINT_URL",
    ):
        assert marker not in text, marker
    names = check_zip(packaged_dirs[stage] / "deployment.zip")
    top = {name.split("/", 1)[0] for name in names}
    assert {"app.py", "chalicelib", "boto3", "joserfc", "pydantic"} <= top
    assert not {"sandbox", "tests", "infra", "scripts", "local", "moto", "flask", "pytest", "werkzeug"} & top
    # Chalice ships only its small runtime module with the app, never the CLI or the local server
    assert {n for n in names if n.startswith("chalice/")} == {"chalice/__init__.py", "chalice/app.py"}
    with zipfile.ZipFile(packaged_dirs[stage] / "deployment.zip") as archive:
        # the one JSON file shipped is the portal mapping, read at start-up (docs/portal-mapping.md)
        assert [
            n for n in archive.namelist() if n.startswith("chalicelib/") and n.endswith((".pyc", ".json"))
        ] == ["chalicelib/mapping/portal-mapping.json"]


def test_only_dev_and_prod_can_be_packaged(tmp_path: Path) -> None:
    for stage in ("local", "test", "", "staging"):
        with pytest.raises(PackageError, match="STAGE must be one of dev, prod"):
            package(stage, tmp_path / "out")


def test_a_zip_with_a_key_or_a_sandbox_module_is_refused(tmp_path: Path) -> None:
    for name, content in (
        ("sandbox/server.py", b"x"),
        ("chalicelib/portal.pem", b"x"),
        ("vendor.txt", b"-----BEGIN PRIVATE KEY-----\n" + b"A" * 80 + b"\n-----END PRIVATE KEY-----\n"),
    ):
        path = tmp_path / "deployment.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("app.py", b"")
            archive.writestr("chalicelib/__init__.py", b"")
            archive.writestr(name, content)
        with pytest.raises(PackageError):
            check_zip(path)


def test_cfn_lint_passes_on_both_packaged_templates_informational_checks_included(
    packaged_dirs: dict[str, Path],
) -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    templates = [str(packaged_dirs[stage] / "sam.json") for stage in DEPLOYED_STAGES]
    result = subprocess.run(
        [str(cfn_lint), "--include-checks", "I", "--", *templates],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_json_turns_off_chalice_policy_generation_for_deployed_stages() -> None:
    config = json.loads((REPO_ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    for stage in DEPLOYED_STAGES:
        assert config["stages"][stage]["autogen_policy"] is False
        assert set(config["stages"][stage]["lambda_functions"]) == {
            function.chalice_name for function in FUNCTIONS
        }


@STAGES
def test_what_api_gateway_answers_itself_is_a_problem_like_the_services(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    # GIVEN the API's gateway responses (SAM puts them in the API's definition: a change is deployed)
    responses = templates[stage]["Resources"]["RestAPI"]["Properties"]["GatewayResponses"]
    # THEN a path or method no route has is a 404, never API Gateway's 403 "Missing Authentication Token"
    missing = responses["MISSING_AUTHENTICATION_TOKEN"]
    assert missing["StatusCode"] == "404"
    # AND every answer API Gateway gives itself, 4xx and 5xx, is an RFC 9457 problem with the
    # security headers and API Gateway's request id as the interaction id
    assert {"MISSING_AUTHENTICATION_TOKEN", "DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    for response_type, response in responses.items():
        headers = response["ResponseParameters"]["Headers"]
        assert headers["Content-Type"] == "'application/problem+json'", response_type
        assert headers["Cache-Control"] == "'no-store'", response_type
        assert headers["X-Content-Type-Options"] == "'nosniff'", response_type
        assert all(value.count("'") == 2 for value in headers.values()), response_type  # one literal each
        for template in response["ResponseTemplates"].values():
            # $context variables filled with sample values must leave a problem document
            sample = template.replace("$context.requestId", "c0ffee00-0000-4000-8000-000000000000")
            sample = sample.replace("$context.error.responseType", "THROTTLED")
            sample = sample.replace("$context.error.messageString", '"Too Many Requests"')
            problem = json.loads(sample)
            assert problem["type"].startswith("urn:myna-relay:problem:"), response_type
            assert problem["interaction_id"] == "c0ffee00-0000-4000-8000-000000000000", response_type
            assert problem["title"], response_type
            assert problem["detail"], response_type
            if "StatusCode" in response:
                assert problem["status"] == int(response["StatusCode"]), response_type
    assert json.loads(missing["ResponseTemplates"]["application/json"].replace("$context.requestId", "x"))[
        "type"
    ].endswith(":not-found")


# -- access log --------------------------------------------------------------------------------------

# The only variables an access log line may hold: what API Gateway itself measured or decided. None
# can carry what a caller wrote in the query string, a header or the body ($context.path is out
# too: receipt and delivery ids are path parameters; the route template is $context.resourcePath).
ACCESS_LOG_ALLOWED = frozenset(
    {
        "$context.requestId",
        "$context.extendedRequestId",
        "$context.integration.requestId",
        "$context.xrayTraceId",
        "$context.requestTimeEpoch",
        "$context.requestTime",
        "$context.httpMethod",
        "$context.resourcePath",
        "$context.protocol",
        "$context.status",
        "$context.responseLength",
        "$context.responseLatency",
        "$context.integration.status",
        "$context.integration.latency",
        "$context.error.responseType",
        "$context.wafResponseCode",
        "$context.identity.sourceIp",
        "$context.stage",
    }
)
# Never, whatever the allow-list says: names of what carries caller-written values.
ACCESS_LOG_DENIED = re.compile(
    r"querystring|query|header|body|userAgent|requestOverride|responseOverride|authorizer|"
    r"\$input|\$method\.request|\$request\.|\$util|\$context\.path|domainName|domainPrefix|"
    r"error\.message|identity\.(caller|user|cognito|accountId|accessKey|principalOrgId|clientCert)",
    re.IGNORECASE,
)
VARIABLE = re.compile(r"\$[A-Za-z_][\w.-]*|\$\{[^}]*\}")


def unsafe_access_log_fields(log_format: str) -> list[str]:
    """The fields of an access log format that are not allow-listed or that could carry a query
    string, a header or a body value; every value must be a single variable between quotes."""
    unsafe = []
    for name, value in json.loads(log_format).items():
        variables = VARIABLE.findall(value)
        if variables != [value] or value not in ACCESS_LOG_ALLOWED or ACCESS_LOG_DENIED.search(value):
            unsafe.append(f"{name}: {value}")
    return unsafe


@STAGES
def test_the_access_log_holds_no_query_string_header_or_body(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    # GIVEN the access log format of the packaged template
    log_format = templates[stage]["Resources"]["RestAPI"]["Properties"]["AccessLogSetting"]["Format"]
    # THEN each field is an allow-listed variable that no caller writes
    assert unsafe_access_log_fields(log_format) == []
    fields = json.loads(log_format)
    # AND it says which request, route, answer, how long and from where
    assert fields["requestId"] == "$context.requestId"
    assert fields["functionRequestId"] == "$context.integration.requestId"  # joins the function's log
    assert fields["route"] == "$context.resourcePath"
    assert {"status", "latencyMs", "ip", "method"} <= set(fields)


@pytest.mark.parametrize(
    "variable",
    [
        "$context.path",
        "$context.identity.userAgent",
        "$context.requestOverride.querystring.code",
        "$context.requestOverride.header.authorization",
        "$context.authorizer.claims.sub",
        "$input.params('code')",
        "$input.body",
        "$method.request.querystring.code",
        "$method.request.header.dpop",
        "$request.header.cookie",
        "$context.domainName",
        "$context.error.message",
        "$context.identity.caller",
        "$context.requestId $context.path",
        "${context.path}",
    ],
)
def test_an_access_log_field_that_could_carry_a_caller_value_is_refused(variable: str) -> None:
    log_format = json.dumps({"requestId": "$context.requestId", "leak": variable})
    assert unsafe_access_log_fields(log_format) == [f"leak: {variable}"]


# -- checkov -----------------------------------------------------------------------------------------


@STAGES
def test_each_checkov_skip_is_in_the_template_with_its_reason_and_in_the_docs(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    resources = templates[stage]["Resources"]
    found = {
        (logical, skip["id"]): skip["comment"]
        for logical, body in resources.items()
        for skip in body.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    # exactly the skips infra/template.py lists, on resources the template has, each with a reason
    assert found == {
        (logical, check): why for logical, skips in CHECKOV_SKIPS.items() for check, why in skips
    }
    for (logical, check), why in found.items():
        assert "Type" in resources[logical], logical
        assert re.fullmatch(r"CKV_AWS_\d+", check)
        assert 40 <= len(why) <= 250, (logical, check)
    # AND docs/deploy.md has a row for each (check, resource)
    docs = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(CKV_AWS_\d+)` \| `(\w+)` \|", docs, re.MULTILINE))
    assert rows == {(check, logical) for logical, check in found}


# -- dead letters, operations key, custom domain -----------------------------------------------------


@STAGES
def test_each_scheduled_function_has_an_encrypted_dead_letter_queue_that_alarms(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    resources = templates[stage]["Resources"]
    queues = resources_of(templates[stage], "AWS::SQS::Queue")
    assert set(queues) == {dead_letter_queue_id(function) for function in SCHEDULED}
    alarms = resources_of(templates[stage], "AWS::CloudWatch::Alarm")
    for function in SCHEDULED:
        queue = dead_letter_queue_id(function)
        assert resources[function.logical_id]["Properties"]["DeadLetterQueue"] == {
            "Type": "SQS",
            "TargetArn": {"Fn::GetAtt": [queue, "Arn"]},
        }
        props = queues[queue]["Properties"]
        assert props["KmsMasterKeyId"] == {"Fn::GetAtt": ["OperationsKey", "Arn"]}
        assert props["MessageRetentionPeriod"] == 14 * 24 * 3600
        alarm = alarms[f"{queue}Alarm"]["Properties"]
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    # the API handler is invoked synchronously: a dead-letter queue would never receive anything
    assert "DeadLetterQueue" not in resources["APIHandler"]["Properties"]


@STAGES
def test_the_operations_key_lets_cloudwatch_logs_use_it_for_the_stacks_log_groups_only(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    key = templates[stage]["Resources"]["OperationsKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    statements = {statement["Sid"]: statement for statement in key["KeyPolicy"]["Statement"]}
    assert set(statements) == {
        "AccountAdministersTheKey",
        "StackRolesUseTheKey",
        "CloudWatchLogsEncryptsTheLogGroups",
        "OperatorsReadTheDeadLetters",
    }
    logs = statements["CloudWatchLogsEncryptsTheLogGroups"]
    assert logs["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}
    groups = [
        value["Fn::Sub"] for value in logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    ]
    prefix = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
    assert groups == [
        *(f"{prefix}/aws/lambda/${{AWS::StackName}}-{function.logical_id}-*" for function in FUNCTIONS),
        f"{prefix}/aws/apigateway/${{AWS::StackName}}/access",
    ]
    operators = statements["OperatorsReadTheDeadLetters"]
    assert operators["Action"] == ["kms:Decrypt"]
    assert operators["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    assert operators["Condition"]["StringEquals"]["kms:ViaService"] == {
        "Fn::Sub": "sqs.${AWS::Region}.amazonaws.com"
    }
    # no wildcard principal anywhere in this key's policy
    assert '"*"' not in json.dumps([statement["Principal"] for statement in statements.values()])


@STAGES
def test_a_custom_domain_is_optional_and_when_given_is_the_only_way_in(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    template = templates[stage]
    for name in ("DomainName", "CertificateArn"):
        assert template["Parameters"][name]["Default"] == ""
    assert template["Conditions"]["HasCustomDomain"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]
    }
    domain = template["Resources"]["CustomDomain"]
    assert domain["Condition"] == "HasCustomDomain"
    assert domain["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert domain["Properties"]["RegionalCertificateArn"] == {"Ref": "CertificateArn"}
    assert domain["Properties"]["SecurityPolicy"] == "TLS_1_2"
    mapping = template["Resources"]["CustomDomainMapping"]
    assert mapping["Condition"] == "HasCustomDomain"
    assert mapping["Properties"] == {
        "DomainName": {"Ref": "CustomDomain"},
        "RestApiId": {"Ref": "RestAPI"},
        "Stage": {"Ref": "RestAPI.Stage"},
    }  # no BasePath: mapped at the root (the pages use root-relative paths)
    api = template["Resources"]["RestAPI"]["Properties"]
    assert api["DisableExecuteApiEndpoint"] == {"Fn::If": ["HasCustomDomain", True, False]}
    assert template["Outputs"]["CustomDomainTarget"]["Condition"] == "HasCustomDomain"
    assert "CustomDomainHasACertificate" in template["Rules"]

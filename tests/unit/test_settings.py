"""Settings: each stage reaches only the AWS it should."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from chalicelib.settings import SettingsError, get_settings
from tests.conftest import stage_config_environment


@pytest.fixture
def stage(monkeypatch: pytest.MonkeyPatch) -> object:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KMS"):
        monkeypatch.delenv(name, raising=False)

    def use(name: str) -> None:
        for key, value in stage_config_environment(name).items():
            monkeypatch.setenv(key, value)
        if name == "local":  # the launcher sets it: only it knows the port the relay listens on
            monkeypatch.setenv("RELAY_ISSUER", "http://127.0.0.1:8000")
        elif name in ("dev", "prod"):  # resolved from SSM by the template (infra.deployment)
            monkeypatch.setenv("RELAY_ISSUER", f"https://api.{name}.myna-relay.example")
        get_settings.cache_clear()

    return use


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_deployed_stages_refuse_a_local_endpoint(stage, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    stage(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8010")
    with pytest.raises(SettingsError, match="must reach real AWS endpoints; remove AWS_ENDPOINT_URL"):
        get_settings()


def test_prod_refuses_a_per_service_endpoint_override(stage, monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore honours AWS_ENDPOINT_URL_<SERVICE> too; one for KMS would redirect every signature
    stage("prod")
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", "http://attacker.example")
    with pytest.raises(SettingsError, match="AWS_ENDPOINT_URL_KMS"):
        get_settings()


def test_local_refuses_to_run_without_the_embedded_endpoint(stage) -> None:
    stage("local")
    with pytest.raises(SettingsError, match="stage 'local' needs AWS_ENDPOINT_URL"):
        get_settings()


def test_local_with_the_embedded_endpoint_is_accepted(stage, monkeypatch: pytest.MonkeyPatch) -> None:
    stage("local")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8010")
    settings = get_settings()
    assert settings.aws_endpoint_url == "http://127.0.0.1:8010"
    assert settings.allows_loopback_urls


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_deployed_stages_without_overrides_are_accepted_and_refuse_loopback_urls(stage, name: str) -> None:
    stage(name)
    settings = get_settings()
    assert settings.stage == name
    assert settings.issuer.scheme == "https"
    assert not settings.allows_loopback_urls


def test_missing_configuration_names_the_variable(stage, monkeypatch: pytest.MonkeyPatch) -> None:
    stage("dev")
    monkeypatch.delenv("RELAY_STATE_TABLE")
    with pytest.raises(SettingsError, match="state_table"):
        get_settings()


def test_settings_are_read_once_until_reset(stage, monkeypatch: pytest.MonkeyPatch) -> None:
    stage("dev")
    first = get_settings()
    monkeypatch.setenv("RELAY_STATE_TABLE", "other")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().state_table == "other"


def test_dict_and_tuple_settings_are_read_as_json(stage, monkeypatch: pytest.MonkeyPatch) -> None:
    stage("dev")
    monkeypatch.setenv("RELAY_PORTAL_SERVICES", '{"local_tax": "SP00000001_AA0001"}')
    monkeypatch.setenv("RELAY_PREVIOUS_SIGNING_KEY_IDS", '["alias/myna-relay-dev-signing-2025"]')
    settings = get_settings()
    assert settings.portal_services == {"local_tax": "SP00000001_AA0001"}
    assert settings.previous_signing_key_ids == ("alias/myna-relay-dev-signing-2025",)


def test_a_setting_that_is_not_json_names_its_field(stage, monkeypatch: pytest.MonkeyPatch) -> None:
    stage("dev")
    monkeypatch.setenv("RELAY_PORTAL_SERVICES", "local_tax=SP00000001_AA0001")
    with pytest.raises(SettingsError, match='error parsing value for field "portal_services"'):
        get_settings()


def test_the_region_falls_back_to_aws_default_region(stage, monkeypatch: pytest.MonkeyPatch) -> None:
    stage("dev")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-3")
    assert get_settings().aws_region == "ap-northeast-3"


# -- the portal's mTLS credentials: a Secrets Manager secret in AWS, PEM files only off AWS ----------

SECRET_ARN = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:myna-relay/prod/portal-mtls-AbCdEf"
PATH_SETTINGS = {
    "RELAY_PORTAL_CLIENT_CERT": "portal_client_cert",
    "RELAY_PORTAL_CLIENT_KEY": "portal_client_key",
    "RELAY_PORTAL_CA_BUNDLE": "portal_ca_bundle",
}


def use_stage(stage, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The stage's configuration (the fixture sets the issuer deployed stages take from SSM)."""
    stage(name)


@pytest.mark.parametrize("name", ["dev", "prod"])
@pytest.mark.parametrize(("variable", "setting"), PATH_SETTINGS.items())
def test_deployed_stages_refuse_portal_credentials_as_file_paths(
    stage, monkeypatch: pytest.MonkeyPatch, name: str, variable: str, setting: str
) -> None:
    # GIVEN a deployed stage whose portal certificate, key or CA is a path (in or beside the package)
    use_stage(stage, monkeypatch, name)
    monkeypatch.setenv(variable, "/var/task/chalicelib/portal-client.pem")
    # WHEN the settings are read
    # THEN they are refused, naming the setting and where the credentials come from instead
    with pytest.raises(SettingsError, match=rf"{setting} must not be set in stage '{name}'") as refused:
        get_settings()
    assert "RELAY_PORTAL_CLIENT_SECRET_ID" in str(refused.value)


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_deployed_stages_accept_portal_credentials_from_a_secret(
    stage, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # GIVEN a deployed stage whose portal credentials are a Secrets Manager secret
    use_stage(stage, monkeypatch, name)
    monkeypatch.setenv("RELAY_PORTAL_CLIENT_SECRET_ID", SECRET_ARN)
    # WHEN the settings are read
    settings = get_settings()
    # THEN the secret is the only source of the credentials
    assert settings.portal_client_secret_id == SECRET_ARN
    assert (settings.portal_client_cert, settings.portal_client_key, settings.portal_ca_bundle) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize("name", ["local", "test", "dev", "prod"])
def test_every_stage_refuses_a_secret_and_file_paths_together(
    stage, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # GIVEN a stage configured with both a secret and a client certificate file
    use_stage(stage, monkeypatch, name)
    if name == "local":
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8010")
    monkeypatch.setenv("RELAY_PORTAL_CLIENT_SECRET_ID", "myna-relay/portal-mtls")
    monkeypatch.setenv("RELAY_PORTAL_CLIENT_CERT", "/home/dev/tls/client.pem")
    monkeypatch.setenv("RELAY_PORTAL_CLIENT_KEY", "/home/dev/tls/client.key")
    # WHEN the settings are read
    # THEN they are refused, naming both sources
    with pytest.raises(
        SettingsError, match="portal_client_cert, portal_client_key and portal_client_secret_id are both"
    ):
        get_settings()


def test_the_test_stage_still_takes_the_sandbox_pem_files(stage, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the test stage with the sandbox's PEM files, as the functional tests configure it
    use_stage(stage, monkeypatch, "test")
    for variable in PATH_SETTINGS:
        monkeypatch.setenv(variable, f"/home/dev/tls/{variable.lower()}.pem")
    # WHEN the settings are read
    settings = get_settings()
    # THEN the paths are kept and no secret is configured
    assert settings.portal_client_cert == "/home/dev/tls/relay_portal_client_cert.pem"
    assert settings.portal_client_secret_id is None


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_blank_portal_credential_settings_mean_not_configured(
    stage, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # GIVEN a deployed stage whose template left the path variables empty next to the secret
    use_stage(stage, monkeypatch, name)
    for variable in PATH_SETTINGS:
        monkeypatch.setenv(variable, "")
    monkeypatch.setenv("RELAY_PORTAL_CLIENT_SECRET_ID", SECRET_ARN)
    # WHEN the settings are read
    settings = get_settings()
    # THEN the empty values are no path at all, and the secret is accepted
    assert settings.portal_client_cert is None
    assert settings.portal_client_secret_id == SECRET_ARN


def test_a_secret_id_that_is_not_an_id_names_its_setting(stage, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a secret id with characters no Secrets Manager name or ARN has
    use_stage(stage, monkeypatch, "prod")
    monkeypatch.setenv("RELAY_PORTAL_CLIENT_SECRET_ID", "myna relay portal; mtls")
    # WHEN the settings are read
    # THEN they are refused, naming the setting
    with pytest.raises(SettingsError, match="portal_client_secret_id"):
        get_settings()


def test_the_shipped_portal_mapping_is_used_when_none_is_named(
    stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage("prod")
    monkeypatch.delenv("RELAY_PORTAL_MAPPING_FILE", raising=False)
    assert get_settings().portal_mapping_file is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        ("{", "is not JSON"),
        (
            '{"version": 1, "datasets": {"local_tax": {"names": [], "fields": {}}}}',
            "is not a valid portal mapping",
        ),
        ('{"version": 2, "datasets": {}}', "version"),
    ],
    ids=["missing", "not-json", "empty-dataset", "wrong-version"],
)
def test_a_broken_portal_mapping_stops_start_up_naming_the_setting(
    stage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "mapping.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    stage("prod")
    monkeypatch.setenv("RELAY_PORTAL_MAPPING_FILE", str(path))
    with pytest.raises(SettingsError, match="RELAY_PORTAL_MAPPING_FILE") as caught:
        get_settings()
    assert problem in str(caught.value)


def test_a_real_portal_service_id_is_accepted(stage, monkeypatch: pytest.MonkeyPatch) -> None:
    stage("dev")
    services = '{"local_tax": "SP12345678_AB1234", "vaccination": "SP12345678_CD0001"}'
    monkeypatch.setenv("RELAY_PORTAL_SERVICES", services)
    assert get_settings().portal_services == {
        "local_tax": "SP12345678_AB1234",
        "vaccination": "SP12345678_CD0001",
    }


@pytest.mark.parametrize(
    "service_id", ["SP12345678_ab1234", "SP1234567_AB1234", "12345678_AB1234", "SP12345678_AB12345", ""]
)
def test_a_malformed_portal_service_id_is_refused_at_load_naming_the_setting(
    stage, monkeypatch: pytest.MonkeyPatch, service_id: str
) -> None:
    # refused when the service starts, not at the callback after the resident signed in
    stage("dev")
    monkeypatch.setenv(
        "RELAY_PORTAL_SERVICES", json.dumps({"local_tax": "SP00000001_AA0001", "vaccination": service_id})
    )
    with pytest.raises(
        SettingsError, match=r"portal_services\['vaccination'\] \(RELAY_PORTAL_SERVICES\)"
    ) as refused:
        get_settings()
    assert "SP########_XX####" in str(refused.value)


def test_the_inquiry_date_is_today_unless_pinned(stage, monkeypatch: pytest.MonkeyPatch) -> None:
    stage("dev")
    assert get_settings().portal_inquiry_date == "today"
    assert get_settings().portal_fixed_inquiry_date is None
    monkeypatch.setenv("RELAY_PORTAL_INQUIRY_DATE", "20260101")  # as integrations pin the test environment
    get_settings.cache_clear()
    assert get_settings().portal_fixed_inquiry_date == date(2026, 1, 1)


@pytest.mark.parametrize("value", ["yesterday", "2026-01-01", "20260230", "2026011", "２０２６０１０１", ""])
def test_a_malformed_inquiry_date_is_refused_naming_the_setting(
    stage, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    stage("dev")
    monkeypatch.setenv("RELAY_PORTAL_INQUIRY_DATE", value)
    with pytest.raises(SettingsError, match=r"portal_inquiry_date \(RELAY_PORTAL_INQUIRY_DATE\)"):
        get_settings()

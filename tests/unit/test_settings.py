"""Settings: each stage reaches only the AWS it should."""

from __future__ import annotations

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

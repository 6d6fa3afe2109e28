"""infra/ is the single source of truth: config, requirements and specs must agree with it."""

from __future__ import annotations

import json
import re

import pytest

from infra.resources import AUDIT_TABLE, KEYS, STAGES, STATE_TABLE, TABLES, stage_environment
from tests.conftest import REPO_ROOT, stage_config_environment


def test_config_defines_exactly_the_four_stages() -> None:
    config = json.loads((REPO_ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    assert set(config["stages"]) == set(STAGES) == {"local", "test", "dev", "prod"}


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_names_the_resources_infra_defines(stage: str) -> None:
    env = stage_config_environment(stage)
    assert env["RELAY_STAGE"] == stage
    for name, value in stage_environment(stage).items():
        assert env[name] == value
    assert not any(name.startswith("AWS_ENDPOINT_URL") for name in env)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_deployed_stages_take_their_issuer_from_ssm_not_from_the_config(stage: str) -> None:
    # the bank's own domain: resolved at deploy time (infra.deployment.SSM_SETTINGS, docs/deploy.md)
    assert "RELAY_ISSUER" not in stage_config_environment(stage)


def test_short_lived_state_and_audit_do_not_share_a_table() -> None:
    assert STATE_TABLE.physical_name("prod") != AUDIT_TABLE.physical_name("prod")
    assert STATE_TABLE.ttl_attribute
    assert AUDIT_TABLE.deletion_protection
    assert AUDIT_TABLE.point_in_time_recovery
    assert len({table.logical_name for table in TABLES}) == len(TABLES)


def test_every_key_attribute_is_declared() -> None:
    for table in TABLES:
        keyed = {table.keys.partition_key, table.keys.sort_key}
        for index in table.indexes:
            keyed |= {index.keys.partition_key, index.keys.sort_key}
        assert {name for name in keyed if name} == set(table.attributes), table.logical_name


def test_signing_key_is_an_asymmetric_p256_key() -> None:
    signing = next(key for key in KEYS if key.env_var == "RELAY_SIGNING_KEY_ID")
    assert (signing.key_spec, signing.key_usage) == ("ECC_NIST_P256", "SIGN_VERIFY")


def test_runtime_requirements_are_pinned_and_exclude_dev_tools() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][^\s]*", line) for line in lines), lines
    names = {line.split("==")[0].lower() for line in lines}
    assert not names & {"chalice", "moto", "pytest", "mypy", "ruff"}


def test_dev_requirements_are_pinned() -> None:
    for line in (REPO_ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-r")):
            assert "==" in line, line

"""Shared fixtures: fake AWS credentials, moto, the test stage's environment, partner documents."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from joserfc.jwk import ECKey
from moto import mock_aws

from chalicelib import container
from infra.bootstrap import ensure_resources
from infra.local_aws import make_emulator_faithful
from tests.browser import browser  # noqa: F401  # the one browser of the session, for every directory

# moto applies conditional writes without a lock and ignores KMS MessageType=DIGEST; AWS does neither.
make_emulator_faithful()

# After the session, nothing the relay logged, answered as an error or stored may hold a persona value,
# an Individual Number, a token or a private key (tests/leakscan.py; report in test-artifacts/).

pytest_plugins = ["tests.leakscan"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_PARTNERS = REPO_ROOT / "local" / "partners"
REGION = "ap-northeast-1"


def stage_config_environment(stage: str) -> dict[str, str]:
    config = json.loads((REPO_ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    return {**config.get("environment_variables", {}), **config["stages"][stage]["environment_variables"]}


@pytest.fixture(autouse=True)
def _fresh_container() -> Iterator[None]:
    container.reset()
    yield
    container.reset()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, and no endpoint override: with one, mock_aws would be bypassed."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KMS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def test_stage_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The test stage's environment, set for the whole test (Chalice's client sets it per request only)."""
    env = stage_config_environment("test")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def resources(aws: None, test_stage_env: dict[str, str]) -> dict[str, str]:
    """Tables and keys of the test stage, created in moto from infra/."""
    session = boto3.session.Session(region_name=REGION)
    return ensure_resources("test", session.client("dynamodb"), session.client("kms"), session.client("s3"))


@pytest.fixture
def kms_client(aws: None) -> Any:
    return boto3.client("kms", region_name=REGION)


@pytest.fixture
def dynamodb_client(aws: None) -> Any:
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def client(resources: dict[str, str]) -> Iterator[Any]:
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="test", project_dir=str(REPO_ROOT)) as test_client:
        yield test_client


def load_demo_partner(name: str = "demo-bank") -> dict[str, Any]:
    return json.loads((DEMO_PARTNERS / f"{name}.partner.json").read_text(encoding="utf-8"))


def public_jwk(use: str, alg: str, kid: str) -> dict[str, Any]:
    key = ECKey.generate_key("P-256")
    jwk = dict(key.as_dict(private=False))
    jwk.update({"kid": kid, "use": use, "alg": alg})
    return jwk


@pytest.fixture
def partner_document() -> Callable[..., dict[str, Any]]:
    """A valid partner document with fresh keys; keyword arguments override top-level fields."""

    def build(**overrides: Any) -> dict[str, Any]:
        document = copy.deepcopy(load_demo_partner("demo-bank"))
        document["id"] = "acme-bank"
        document["redirect_uris"] = ["https://bank.example/callback"]
        document["webhook_url"] = "https://bank.example/webhook"
        document["jwks"] = {
            "keys": [
                public_jwk("sig", "ES256", "acme-sig-1"),
                public_jwk("enc", "ECDH-ES+A256KW", "acme-enc-1"),
            ]
        }
        document.update(overrides)
        return document

    return build

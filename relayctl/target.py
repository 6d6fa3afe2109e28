"""Which AWS the CLI talks to: the stack started by ``make run`` (``--local``), or the account and
stage the environment points at. Table names always come from ``infra.resources``."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from infra.resources import (
    APP_NAME,
    AUDIT_TABLE,
    HEADS_BUCKET,
    PARTNERS_TABLE,
    SIGNING_KEY,
    STAGES,
    STATE_TABLE,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_s3.client import S3Client

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_DIR_ENV = "MYNA_RELAY_LOCAL_DIR"
STACK_FILE = "stack.json"
STACK_NAME_ENV = "RELAY_STACK_NAME"


class TargetError(RuntimeError):
    """The CLI cannot tell or reach which AWS to talk to."""


@dataclass(frozen=True)
class Target:
    stage: str
    region: str
    endpoint_url: str | None
    local_credentials: bool
    api_url: str | None = None  # the relay's base URL, when the launcher recorded one (--local)

    @property
    def partners_table(self) -> str:
        return PARTNERS_TABLE.physical_name(self.stage)

    @property
    def audit_table(self) -> str:
        return AUDIT_TABLE.physical_name(self.stage)

    @property
    def state_table(self) -> str:
        return STATE_TABLE.physical_name(self.stage)

    @property
    def stack_name(self) -> str:
        """The stage's CloudFormation stack: ``RELAY_STACK_NAME`` if set, else ``myna-relay-<stage>``
        (the name docs/deploy.md deploys it under)."""
        return os.environ.get(STACK_NAME_ENV) or f"{APP_NAME}-{self.stage}"

    def stack_function(self, logical_id: str) -> tuple[str, str]:
        """The physical name of one of the stack's functions (CloudFormation names them
        ``<stack>-<logical id>-<suffix>``) and the account the stack is in, asked of the stack
        itself: ``cloudformation:DescribeStackResource``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            detail = self._client("cloudformation").describe_stack_resource(
                StackName=self.stack_name, LogicalResourceId=logical_id
            )["StackResourceDetail"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise TargetError(
                f"cannot find {logical_id} in stack {self.stack_name} ({error.get('Code')}: "
                f"{error.get('Message')}); set {STACK_NAME_ENV} if the stack has another name"
            ) from None
        except BotoCoreError as exc:
            raise TargetError(f"cannot reach CloudFormation: {exc}") from None
        account = str(detail.get("StackId", "")).split(":")[4:5]
        return str(detail["PhysicalResourceId"]), account[0] if account else ""

    @property
    def signing_key(self) -> str:
        """The alias of the stage's signing key (checkpoints, tokens, sealed payloads)."""
        return SIGNING_KEY.alias(self.stage)

    @property
    def heads_bucket(self) -> str:
        """The write-once bucket of signed heads: ``RELAY_HEADS_BUCKET`` if set; a deployed stage's
        name ends with the account id (the template names it so), asked of STS."""
        configured = os.environ.get(HEADS_BUCKET.env_var)
        if configured:
            return configured
        name = HEADS_BUCKET.physical_name(self.stage)
        if self.stage in ("local", "test"):
            return name
        account = self._client("sts").get_caller_identity()["Account"]
        return f"{name}-{account}"

    @property
    def allows_loopback(self) -> bool:
        return self.stage in ("local", "test")

    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self._client("dynamodb")
        return client

    def kms(self) -> KMSClient:
        client: KMSClient = self._client("kms")
        return client

    def s3(self) -> S3Client:
        client: S3Client = self._client("s3")
        return client

    def lambda_(self) -> Any:
        return self._client("lambda", read_timeout=150)  # the checkpoint function may run 120 s

    def _client(
        self,
        service: Literal["dynamodb", "kms", "s3", "sts", "lambda", "cloudformation"],
        *,
        read_timeout: int = 5,
    ) -> Any:
        import boto3
        from botocore.config import Config

        if self.local_credentials:  # moto accepts any credentials; never the operator's real ones
            session = boto3.session.Session(
                region_name=self.region, aws_access_key_id="testing", aws_secret_access_key="testing"
            )
        else:
            session = boto3.session.Session(region_name=self.region)
        return session.client(
            service,
            endpoint_url=self.endpoint_url,
            config=Config(
                retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=read_timeout
            ),
        )


def local_dir(override: str | None = None) -> Path:
    return Path(override or os.environ.get(LOCAL_DIR_ENV) or REPO_ROOT / ".local")


def local_target(state_dir: str | None = None) -> Target:
    """The stack recorded by the launcher, after checking that it still answers."""
    path = local_dir(state_dir) / STACK_FILE
    try:
        stack = json.loads(path.read_text(encoding="utf-8"))
        endpoint = str(stack["aws_endpoint_url"])
        region = str(stack["region"])
        api_url = str(stack["api_url"]) if "api_url" in stack else None
    except FileNotFoundError:
        raise TargetError(
            f"no local stack is running ({path} not found); start one with `make run`"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise TargetError(f"{path} is unreadable; restart the local stack with `make run`") from None
    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=1.0):
            pass
    except OSError:
        raise TargetError(
            f"the local stack recorded in {path} does not answer at {endpoint}; start it with `make run`"
        ) from None
    return Target(
        stage="local", region=region, endpoint_url=endpoint, local_credentials=True, api_url=api_url
    )


def environment_target(stage: str | None) -> Target:
    """Real AWS (or whatever AWS_ENDPOINT_URL says) for a named stage."""
    stage = stage or os.environ.get("RELAY_STAGE")
    if not stage:
        raise TargetError("say which stage to manage: --stage dev|prod (or RELAY_STAGE), or --local")
    if stage not in STAGES:
        raise TargetError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    if stage in ("dev", "prod") and endpoint:
        raise TargetError(f"stage {stage!r} must reach real AWS; unset AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "ap-northeast-1"
    return Target(stage=stage, region=region, endpoint_url=endpoint, local_credentials=False)

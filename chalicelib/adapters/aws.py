"""Builds the AWS clients: standard retries with backoff, explicit timeouts, one session per container.

Imported lazily by the composition root so that cold start pays for the AWS SDK only when a request
needs AWS. The endpoint comes from settings (``AWS_ENDPOINT_URL``: moto locally, nothing in AWS).

The clients are botocore's, built from a botocore session: a boto3 client is exactly that object
(boto3's session adds resources and S3's transfer methods, which the relay uses neither of), but
``import boto3`` also imports s3transfer and boto3's resource factory, about 25 ms of every cold
start (bench/RESULTS.md, "Cold start"). The credential chain, the region and the retry, timeout
and endpoint configuration are botocore's in both cases.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.domain.errors import DependencyUnavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

    from chalicelib.settings import Settings


class AwsClients:
    """One botocore session and its clients, created on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session = botocore.session.get_session()
        self._config = Config(
            retries={"mode": "standard", "max_attempts": settings.aws_max_attempts},
            connect_timeout=settings.aws_connect_timeout_s,
            read_timeout=settings.aws_read_timeout_s,
            user_agent_extra="myna-relay",
        )
        self._dynamodb: DynamoDBClient | None = None
        self._kms: KMSClient | None = None
        self._secretsmanager: SecretsManagerClient | None = None
        self._s3: S3Client | None = None
        # A botocore Session is not thread-safe while it creates clients (the clients themselves
        # are). Lambda runs one request at a time; `chalice local` serves requests on threads.
        self._lock = threading.Lock()

    def _client(self, service: str) -> Any:
        return self._session.create_client(
            service,
            region_name=self._settings.aws_region,
            config=self._config,
            endpoint_url=self._settings.aws_endpoint_url,
        )

    @property
    def dynamodb(self) -> DynamoDBClient:
        if self._dynamodb is None:
            with self._lock:
                if self._dynamodb is None:
                    self._dynamodb = self._client("dynamodb")
        return self._dynamodb

    @property
    def kms(self) -> KMSClient:
        if self._kms is None:
            with self._lock:
                if self._kms is None:
                    self._kms = self._client("kms")
        return self._kms

    @property
    def secretsmanager(self) -> SecretsManagerClient:
        if self._secretsmanager is None:
            with self._lock:
                if self._secretsmanager is None:
                    self._secretsmanager = self._client("secretsmanager")
        return self._secretsmanager

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            with self._lock:
                if self._s3 is None:
                    self._s3 = self._client("s3")
        return self._s3


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def unavailable(service: str, operation: str, exc: ClientError | BotoCoreError) -> DependencyUnavailable:
    """A failure left after botocore's retries, named without echoing request data."""
    reason = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return DependencyUnavailable(f"{service} {operation} failed: {reason}", check=service)

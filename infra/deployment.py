"""What a deployed stage needs beyond its tables and keys: the Lambda functions Chalice generates,
their limits, and where each stage's configuration and secrets live in the account.

Read by ``infra.template`` (the resources merged into ``chalice package``'s template),
``infra.policy`` (the per-function IAM policies) and the tests. It describes; it never calls AWS.

Configuration that differs per account (the public issuer URL, the portal's endpoints and the
approved portal services) is kept in SSM Parameter Store and resolved by CloudFormation at deploy
time (``{{resolve:ssm:...}}``), so the package is the same for every bank. The portal's mutual-TLS
certificate and key are a Secrets Manager secret read by the functions at run time: never an
environment variable, never a file in the package.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.resources import APP_NAME

DEPLOYED_STAGES: tuple[str, ...] = ("dev", "prod")


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function as ``chalice package`` names it."""

    chalice_name: str  # the name in .chalice/config.json "lambda_functions"
    logical_id: str  # the function's resource in the template
    role_logical_id: str  # the role Chalice creates for it when it has its own policy file
    purpose: str


API_HANDLER = FunctionSpec(
    "api_handler", "APIHandler", "ApiHandlerRole", "every HTTP route behind API Gateway"
)
PROCESS_DUE = FunctionSpec(
    "process_due",
    "ProcessDue",
    "ProcessDueRole",
    "every minute: poll the portal, seal, expire, send webhooks",
)
AUDIT_CHECKPOINT = FunctionSpec(
    "audit_checkpoint", "AuditCheckpoint", "AuditCheckpointRole", "every 10 minutes: sign the audit tree head"
)
FUNCTIONS: tuple[FunctionSpec, ...] = (API_HANDLER, PROCESS_DUE, AUDIT_CHECKPOINT)


@dataclass(frozen=True)
class StageDeployment:
    stage: str
    # API Gateway stage throttling (token bucket for the whole stage, every route and method)
    api_rate_limit: float
    api_burst_limit: int
    # Reserved concurrency caps what one stage can take from the account and keeps the
    # scheduled functions single: overlapping runs are safe, but one is enough.
    reserved_concurrency: dict[str, int]
    log_retention_days: int
    # Alarms
    api_5xx_rate: float  # share of requests answered 5xx over 5 minutes
    poller_lag_ms: int  # how late the most overdue flow may be before someone is told

    def parameter(self, name: str) -> str:
        """The SSM parameter holding one setting of this stage."""
        return f"/{APP_NAME}/{self.stage}/{name}"

    @property
    def portal_secret_name(self) -> str:
        """The Secrets Manager secret with the portal mTLS credentials (JSON: certificate,
        private_key, optional ca_bundle), created by the operator right after the first deploy,
        encrypted with the stack's data key (docs/deploy.md)."""
        return f"{APP_NAME}/{self.stage}/portal-mtls"


def portal_secret_arn(stage: str) -> dict[str, str]:
    """The portal secret's ARN as a CloudFormation ``Fn::Sub`` pattern: Secrets Manager appends
    six random characters to a secret's name, matched by ``??????``."""
    return {
        "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
        f"{APP_NAME}/{stage}/portal-mtls-??????"
    }


DEPLOYMENTS: dict[str, StageDeployment] = {
    "dev": StageDeployment(
        stage="dev",
        api_rate_limit=20,
        api_burst_limit=40,
        reserved_concurrency={"api_handler": 10, "process_due": 1, "audit_checkpoint": 1},
        log_retention_days=30,
        api_5xx_rate=0.05,
        poller_lag_ms=300_000,
    ),
    "prod": StageDeployment(
        stage="prod",
        api_rate_limit=100,
        api_burst_limit=200,
        reserved_concurrency={"api_handler": 100, "process_due": 2, "audit_checkpoint": 1},
        log_retention_days=400,
        api_5xx_rate=0.01,
        poller_lag_ms=120_000,
    ),
}

# Settings resolved from SSM at deploy time: environment variable -> parameter name (below the
# stage's prefix). Values are plain strings (not SecureString: none of them is a secret, and
# CloudFormation cannot put SecureString values into a Lambda environment).
SSM_SETTINGS: dict[str, str] = {
    "RELAY_ISSUER": "issuer",
    "RELAY_PORTAL_AUTHORIZE_URL": "portal/authorize-url",
    "RELAY_PORTAL_TOKEN_URL": "portal/token-url",
    "RELAY_PORTAL_REQUEST_URL": "portal/request-url",
    "RELAY_PORTAL_RESULT_URL": "portal/result-url",
    "RELAY_PORTAL_SERVICES": "portal/services",
}


def deployment(stage: str) -> StageDeployment:
    if stage not in DEPLOYMENTS:
        raise ValueError(f"stage {stage!r} is not deployed; deployable stages: {', '.join(DEPLOYED_STAGES)}")
    return DEPLOYMENTS[stage]


def function_environment(stage: str) -> dict[str, str]:
    """Environment variables the template adds to every function of ``stage`` (beyond those in
    .chalice/config.json): the SSM-resolved settings and the portal secret's name."""
    spec = deployment(stage)
    env = {
        name: f"{{{{resolve:ssm:{spec.parameter(parameter)}}}}}" for name, parameter in SSM_SETTINGS.items()
    }
    env["RELAY_PORTAL_CLIENT_SECRET_ID"] = spec.portal_secret_name
    return env

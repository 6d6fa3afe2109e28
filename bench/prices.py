"""AWS list prices the cost figure uses: ap-northeast-1 (Tokyo), on-demand, USD, free tiers ignored.

Every price below was taken from the public AWS price pages **as known on 2025-06-01** (the
DynamoDB on-demand prices are those in force since the 50 % cut of 2024-11-01). The benchmark
machine has no internet access, so none of them was re-read when the benchmark was written or
run: re-check each against its source URL before relying on the figure. Prices marked
"assumption" are the ones least certain.
"""

from __future__ import annotations

from typing import Final

AS_OF: Final = "2025-06-01"
REGION: Final = "ap-northeast-1"

# -- AWS Lambda (https://aws.amazon.com/lambda/pricing/), ap-northeast-1, as of 2025-06-01 -------
# Duration, x86_64, first 6 billion GB-seconds per month: USD per GB-second.
LAMBDA_X86_USD_PER_GB_SECOND: Final = 0.0000166667
# Duration, arm64 (Graviton), first 7.5 billion GB-seconds per month: USD per GB-second.
LAMBDA_ARM_USD_PER_GB_SECOND: Final = 0.0000133334
# Requests, any architecture: USD per request (USD 0.20 per million).
LAMBDA_USD_PER_REQUEST: Final = 0.20 / 1_000_000
# Not a price, but how duration is billed: rounded up to the nearest 1 ms, so 1 ms is the least an
# invocation is billed (same page).
LAMBDA_MIN_BILLED_MS: Final = 1
# Not a price, but how Lambda turns memory into CPU (https://docs.aws.amazon.com/lambda/latest/dg/
# configuration-memory.html): CPU is allocated in proportion to memory; 1,769 MB is one vCPU.
LAMBDA_MB_PER_VCPU: Final = 1769

# -- Amazon API Gateway (https://aws.amazon.com/api-gateway/pricing/), ap-northeast-1, 2025-06-01 --
# REST API (what Chalice deploys), first 333 million requests per month: USD per request.
API_GATEWAY_REST_USD_PER_REQUEST: Final = 4.25 / 1_000_000
# HTTP API, first 300 million requests per month: USD per request (for comparison only).
API_GATEWAY_HTTP_USD_PER_REQUEST: Final = 1.29 / 1_000_000

# -- Amazon DynamoDB on-demand (https://aws.amazon.com/dynamodb/pricing/on-demand/), -------------
# ap-northeast-1, Standard table class, as of 2025-06-01 (after the 2024-11-01 price cut).
# USD per write request unit (USD 0.715 per million WRU). Assumption: halved from the
# pre-cut Tokyo price of USD 1.4269 per million; the exact post-cut Tokyo figure was not re-read.
DYNAMODB_USD_PER_WRU: Final = 0.715 / 1_000_000
# USD per read request unit (USD 0.1425 per million RRU); same caveat as above.
DYNAMODB_USD_PER_RRU: Final = 0.1425 / 1_000_000

# -- AWS KMS (https://aws.amazon.com/kms/pricing/), every region, as of 2025-06-01 ---------------
# Symmetric requests (Encrypt, Decrypt, GenerateDataKey...): USD per request (0.03 per 10,000).
KMS_SYMMETRIC_USD_PER_REQUEST: Final = 0.03 / 10_000
# Asymmetric requests except RSA 2048 (ECC_NIST_P256 Sign and GetPublicKey): USD per request
# (0.15 per 10,000).
KMS_ASYMMETRIC_USD_PER_REQUEST: Final = 0.15 / 10_000
# HMAC requests (GenerateMac, VerifyMac): USD per request. Assumption: billed like symmetric
# requests (0.03 per 10,000); the price page groups them with the standard request price.
KMS_HMAC_USD_PER_REQUEST: Final = 0.03 / 10_000

# -- Amazon CloudWatch Logs (https://aws.amazon.com/cloudwatch/pricing/), ap-northeast-1, ------
# 2025-06-01. Standard log class ingestion: USD per GB ingested.
CLOUDWATCH_LOGS_USD_PER_GB_INGESTED: Final = 0.76

# -- Amazon EventBridge (https://aws.amazon.com/eventbridge/pricing/), 2025-06-01 -----------------
# Scheduled rules on the default event bus invoking Lambda: no charge per invocation.
EVENTBRIDGE_SCHEDULED_USD_PER_INVOCATION: Final = 0.0

SOURCES: Final = {
    "lambda": "https://aws.amazon.com/lambda/pricing/",
    "api_gateway": "https://aws.amazon.com/api-gateway/pricing/",
    "dynamodb": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    "kms": "https://aws.amazon.com/kms/pricing/",
    "cloudwatch_logs": "https://aws.amazon.com/cloudwatch/pricing/",
    "eventbridge": "https://aws.amazon.com/eventbridge/pricing/",
}

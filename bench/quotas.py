"""Default AWS quotas, ap-northeast-1 (Tokyo), and the onboarding rate they let one account carry.

Each quota is a dated constant with its source URL, in the style of bench/prices.py. The
benchmark machine has no internet access: "read in a stored copy" means the value was read, on
``AS_OF``, in a stored copy of the documentation page named (its own date unknown); "as known, not
re-checked" means it was not found there and is the value as known when this was written. Every
one of them is a default that AWS raises on request (Service Quotas): the figure is what an account
carries *before* asking.

The ceiling of a quota is its limit divided by what one onboarding consumes of it, counted from the
measured flow (requests by operation, request units by table and index, billed Lambda seconds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from bench.report import Section, limit_text

AS_OF: Final = "2026-12-06"
REGION: Final = "ap-northeast-1"

READ: Final = "read in a stored copy of the page"
KNOWN: Final = "as known, not re-checked"

# -- Amazon API Gateway (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html) --
# Throttle quota per account, per Region, across HTTP, REST and WebSocket APIs: 10,000 requests per
# second steady, a token bucket of 5,000 for bursts (2,500 / 1,250 in a list of newer Regions, which
# does not include Tokyo).
API_GATEWAY_RPS: Final = 10_000
API_GATEWAY_BURST: Final = 5_000

# -- AWS Lambda (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html) -----------
# Concurrent executions per Region: 1,000 (the page warns that new accounts start lower and are
# raised automatically with use).
LAMBDA_CONCURRENCY: Final = 1_000

# -- Amazon DynamoDB (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
# on-demand-capacity-mode-max-throughput.html and .../ServiceQuotas.html) --------------------------
# On-demand tables: 40,000 read request units and 40,000 write request units per second per table
# (the table-level throughput quota; a global secondary index is bounded alike, on its own).
DYNAMODB_TABLE_RRU_PER_S: Final = 40_000
DYNAMODB_TABLE_WRU_PER_S: Final = 40_000
# Per partition (one partition key value's items, in a table or an index): 3,000 read and 1,000
# write units per second. As known, not re-checked (the 1,000 is the one bench/audit_scale.py uses).
DYNAMODB_PARTITION_RCU_PER_S: Final = 3_000
DYNAMODB_PARTITION_WCU_PER_S: Final = 1_000

# -- AWS KMS (https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html) -------
# "Cryptographic operations (symmetric) request rate", shared by Decrypt, Encrypt, GenerateDataKey
# (and WithoutPlaintext), GenerateMac, GenerateRandom, ReEncrypt and VerifyMac: 10,000 a second, and
# 20,000 in a list of Regions that includes Asia Pacific (Tokyo). The page lists the HMAC operations
# in this shared quota, so they are metered with the symmetric ones here.
KMS_SYMMETRIC_RPS: Final = 20_000
# "Cryptographic operations (ECC) request rate", shared by Sign and Verify (and DeriveSharedSecret)
# on elliptic-curve keys: 1,000 in the newest stored copy of the page (the one that also lists
# ML-DSA keys); an older stored copy of the same page says 300, which is the value most planning
# documents quote. Both are reported; the ceiling uses the lower (a platform team plans on the
# quota it can count on before asking for more; the issue also speaks of "a few hundred").
KMS_ECC_RPS_NEWER: Final = 1_000
KMS_ECC_RPS: Final = 300
# GetPublicKey request rate: 2,000 (as known, not re-checked; the relay caches the public key per
# container, so a flow makes none once warm).
KMS_GET_PUBLIC_KEY_RPS: Final = 2_000

SOURCES: Final = {
    "api_gateway": "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html",
    "lambda": "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html",
    "dynamodb_table": (
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode-max-throughput.html"
    ),
    "dynamodb_partition": "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html",
    "kms": "https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html",
}

# KMS operations by the quota that meters them (the relay's signing key is ECC_NIST_P256).
KMS_CLASS: Final = {
    "Sign": "ecc",
    "Verify": "ecc",
    "Encrypt": "symmetric",
    "Decrypt": "symmetric",
    "GenerateDataKey": "symmetric",
    "GenerateDataKeyWithoutPlaintext": "symmetric",
    "ReEncrypt": "symmetric",
    "GenerateRandom": "symmetric",
    "GenerateMac": "symmetric",  # HMAC: in the shared symmetric quota, per the page
    "VerifyMac": "symmetric",
    "GetPublicKey": "get_public_key",
}


@dataclass(frozen=True)
class Quota:
    key: str
    label: str
    limit: float
    unit: str
    source: str
    checked: str  # READ or KNOWN


QUOTAS: Final = {
    quota.key: quota
    for quota in (
        Quota(
            "api_gateway",
            "API Gateway throttle, account and Region",
            API_GATEWAY_RPS,
            "requests/s",
            SOURCES["api_gateway"],
            READ,
        ),
        Quota(
            "lambda_concurrency",
            "Lambda concurrent executions, Region",
            LAMBDA_CONCURRENCY,
            "executions",
            SOURCES["lambda"],
            READ,
        ),
        Quota(
            "kms_symmetric",
            "KMS cryptographic operations (symmetric, HMAC included)",
            KMS_SYMMETRIC_RPS,
            "requests/s",
            SOURCES["kms"],
            READ,
        ),
        Quota(
            "kms_ecc", "KMS cryptographic operations (ECC)", KMS_ECC_RPS, "requests/s", SOURCES["kms"], READ
        ),
        Quota(
            "kms_get_public_key",
            "KMS GetPublicKey",
            KMS_GET_PUBLIC_KEY_RPS,
            "requests/s",
            SOURCES["kms"],
            KNOWN,
        ),
        Quota(
            "dynamodb_table_read",
            "DynamoDB on-demand reads, per table or index",
            DYNAMODB_TABLE_RRU_PER_S,
            "RRU/s",
            SOURCES["dynamodb_table"],
            READ,
        ),
        Quota(
            "dynamodb_table_write",
            "DynamoDB on-demand writes, per table or index",
            DYNAMODB_TABLE_WRU_PER_S,
            "WRU/s",
            SOURCES["dynamodb_table"],
            READ,
        ),
        Quota(
            "dynamodb_partition_read",
            "DynamoDB reads, per partition",
            DYNAMODB_PARTITION_RCU_PER_S,
            "RRU/s",
            SOURCES["dynamodb_partition"],
            KNOWN,
        ),
        Quota(
            "dynamodb_partition_write",
            "DynamoDB writes, per partition",
            DYNAMODB_PARTITION_WCU_PER_S,
            "WRU/s",
            SOURCES["dynamodb_partition"],
            KNOWN,
        ),
    )
}


@dataclass(frozen=True)
class Ceiling:
    """One quota applied to one thing the flow uses: the onboardings per second it allows."""

    quota: Quota
    scope: str  # what it applies to: "account", "table state", "index audit/by_day, 32 shards"
    per_flow: float  # what one onboarding consumes of it (requests, units, execution-seconds)
    metered: str  # what that is, in words
    partitions: int = 1  # partition key values the load spreads over (per-partition quotas)

    @property
    def onboardings_per_s(self) -> float:
        if self.per_flow <= 0:
            return math.inf
        return self.quota.limit * self.partitions / self.per_flow


@dataclass(frozen=True)
class FlowUse:
    """What one measured onboarding consumed, as the quotas meter it."""

    api_requests: int
    billed_s: float  # billed Lambda seconds (the report's model), summed over the flow's invocations
    calls: Mapping[str, int]  # "service.Operation" -> count
    table_rru: Mapping[str, float]  # table name -> RRU
    table_wru: Mapping[str, float]  # table name -> WRU on the table itself
    index_wru: Mapping[str, float]  # "table/index" -> WRU


def _role(table: str) -> str:
    """ "myna-relay-test-state" -> "state" (the stage's prefix off)."""
    return table.rsplit("-", 1)[-1]


def kms_by_class(calls: Mapping[str, int]) -> dict[str, int]:
    """The flow's KMS requests by the quota class that meters them; unknown operations are kept
    under their own name (no quota here: they would show up, not vanish)."""
    classes: dict[str, int] = {}
    for op, n in calls.items():
        service, _, name = op.partition(".")
        if service != "kms" or not n:
            continue
        cls = KMS_CLASS.get(name, f"unmapped {name}")
        classes[cls] = classes.get(cls, 0) + n
    return classes


def ceilings(
    use: FlowUse,
    *,
    hot_read_tables: Mapping[str, str] | None = None,
    sharded_indexes: Mapping[str, int] | None = None,
    audit_indexes_per_s: float | None = None,
) -> list[Ceiling]:
    """Every default quota the flow touches, with its ceiling.

    ``hot_read_tables``: table role -> why every flow reads the same item there (one partition).
    ``sharded_indexes``: "role/index" -> partition key values its writes spread over (the per-
    partition write quota times that). ``audit_indexes_per_s``: the sharded audit indexes' own
    ceiling (bench/audit_scale.py, the longest trail), taken as is: those indexes are then left out
    of the per-partition rows here."""
    hot_read_tables = hot_read_tables or {}
    sharded_indexes = sharded_indexes or {}
    rows = [
        Ceiling(QUOTAS["api_gateway"], "account", use.api_requests, "API requests"),
        Ceiling(
            QUOTAS["lambda_concurrency"],
            "Region",
            use.billed_s,
            "billed execution-seconds: concurrency = rate x seconds",
        ),
    ]
    kms = kms_by_class(use.calls)
    for cls in ("symmetric", "ecc", "get_public_key"):
        ops = sorted(
            f"{name} {n}"
            for op, n in use.calls.items()
            if op.startswith("kms.") and n and KMS_CLASS.get(name := op.removeprefix("kms.")) == cls
        )
        rows.append(Ceiling(QUOTAS[f"kms_{cls}"], "account", kms.get(cls, 0), ", ".join(ops) or "none"))
    for table, rru in sorted(use.table_rru.items()):
        if rru:
            rows.append(Ceiling(QUOTAS["dynamodb_table_read"], f"table {_role(table)}", rru, "RRU"))
    for table, wru in sorted(use.table_wru.items()):
        if wru:
            rows.append(Ceiling(QUOTAS["dynamodb_table_write"], f"table {_role(table)}", wru, "WRU"))
    for name, wru in sorted(use.index_wru.items()):
        table, _, index = name.partition("/")
        if wru:
            scope = f"index {_role(table)}/{index}"
            rows.append(Ceiling(QUOTAS["dynamodb_table_write"], scope, wru, "WRU"))
            shards = sharded_indexes.get(f"{_role(table)}/{index}")
            if shards:
                rows.append(
                    Ceiling(
                        QUOTAS["dynamodb_partition_write"],
                        f"{scope}, {shards} shards",
                        wru,
                        "WRU, spread evenly over the shards",
                        partitions=shards,
                    )
                )
    for table, rru in sorted(use.table_rru.items()):
        why = hot_read_tables.get(_role(table))
        if rru and why:
            rows.append(
                Ceiling(QUOTAS["dynamodb_partition_read"], f"table {_role(table)}: {why}", rru, "RRU")
            )
    if audit_indexes_per_s is not None:
        # the audit figure is a ceiling already: expressed as 1 unit per flow against that limit
        audit = Quota(
            "dynamodb_partition_write_audit",
            "DynamoDB writes, per partition (audit indexes, computed in Audit at scale)",
            audit_indexes_per_s,
            "onboardings/s",
            SOURCES["dynamodb_partition"],
            KNOWN,
        )
        rows.append(Ceiling(audit, "indexes audit/by_day and audit/by_partner", 1, "see Audit at scale"))
    for cls, n in sorted(kms.items()):
        if cls.startswith("unmapped"):
            unknown = Quota(
                cls, f"KMS {cls.removeprefix('unmapped ')} (no quota mapped)", math.inf, "", "", KNOWN
            )
            rows.append(Ceiling(unknown, "account", n, "requests"))
    return rows


def binding(rows: list[Ceiling]) -> Ceiling:
    """The quota that throttles first: the lowest ceiling (ties: the first listed)."""
    return min(rows, key=lambda row: row.onboardings_per_s)


# -- the report's section ------------------------------------------------------------------------------

FIGURE: Final = "max_onboardings_per_s_default_quotas"


def section(sections: list[Section]) -> Section | None:
    """The quotas' section, computed from the other sections of the same run (the CPU-flow one for
    the per-flow use; the audit one, when it ran, for the audit indexes). None without the former."""
    from chalicelib.domain.delivery import DUE_SHARDS

    by_title = {s.title: s for s in sections}
    flow = next((s for s in sections if "quota_use" in s.data), None)
    if flow is None:
        return None
    raw = flow.data["quota_use"]
    use = FlowUse(
        api_requests=raw["api_requests"],
        billed_s=raw["billed_s"],
        calls=raw["calls"],
        table_rru=raw["table_rru"],
        table_wru=raw["table_wru"],
        index_wru=raw["index_wru"],
    )
    audit = next(
        (
            s.figures["audit_partner_max_onboardings_per_s"]
            for s in by_title.values()
            if "audit_partner_max_onboardings_per_s" in s.figures
        ),
        None,
    )
    rows = ceilings(
        use,
        hot_read_tables={"partners": "one partner's item, if one partner brings every onboarding"},
        sharded_indexes={"state/by_due": DUE_SHARDS},
        audit_indexes_per_s=audit,
    )
    bound = binding(rows)
    figure = math.floor(bound.onboardings_per_s)
    result = Section(
        title="Default quotas: onboardings per second one account carries", figures={FIGURE: figure}
    )
    result.data = {
        "as_of": AS_OF,
        "region": REGION,
        "binding": {
            "quota": bound.quota.key,
            "scope": bound.scope,
            "onboardings_per_s": bound.onboardings_per_s,
        },
        "ceilings": [
            {
                "quota": row.quota.key,
                "label": row.quota.label,
                "limit": row.quota.limit,
                "unit": row.quota.unit,
                "partitions": row.partitions,
                "scope": row.scope,
                "per_flow": row.per_flow,
                "metered": row.metered,
                "onboardings_per_s": None if math.isinf(row.onboardings_per_s) else row.onboardings_per_s,
                "source": row.quota.source,
                "checked": row.quota.checked,
            }
            for row in rows
        ],
        "kms_ecc_rps_newer": KMS_ECC_RPS_NEWER,
        "audit_indexes_included": audit is not None,
    }
    result.detail = _detail(rows, bound, use, audit)
    return result


def _rate(value: float) -> str:
    return "no limit (none per flow)" if math.isinf(value) else f"{value:,.0f}"


def _detail(rows: list[Ceiling], bound: Ceiling, use: FlowUse, audit: float | None) -> str:
    lines = [
        f"The sustained onboarding rate one AWS account in {REGION} carries before a **default** quota "
        "throttles it, computed (not measured) from the median flow of the CPU section: for each quota, what one "
        "onboarding consumes of it (requests by operation, request units by table and index as that section "
        "counted them, billed Lambda seconds as it modelled them), the quota, and the ceiling, quota / per flow "
        "(times the partition key values for a per-partition quota). The scheduled run (one a minute, whatever "
        "the volume) and the portal are left out. Quotas as of "
        f'{AS_OF}, each a dated constant with its source in bench/quotas.py; "{READ}" is a stored copy '
        f'of the documentation (this machine has no internet), "{KNOWN}" a value not found there.',
        "",
        "| quota | applies to | default | per onboarding (measured) | ceiling, onboardings/s | source |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        quota = row.quota
        default = "—" if math.isinf(quota.limit) else f"{quota.limit:,.0f} {quota.unit}"
        if row.partitions > 1:
            default += f" x {row.partitions}"
        shown = f"**{_rate(row.onboardings_per_s)}**" if row is bound else _rate(row.onboardings_per_s)
        source = f"[{quota.checked}]({quota.source})" if quota.source else quota.checked
        lines.append(
            f"| {quota.label} | {row.scope} | {default} | {row.per_flow:g} ({row.metered}) | {shown} | {source} |"
        )
    lines += [
        "",
        f"**Binding: {bound.quota.label} ({bound.scope}), {bound.onboardings_per_s:,.0f} onboardings a second** "
        f"(target {limit_text(FIGURE)}; source: {bound.quota.source or 'none'}).",
    ]
    kms = kms_by_class(use.calls)
    notes = []
    if kms.get("ecc"):
        newer = KMS_ECC_RPS_NEWER / kms["ecc"]
        notes.append(
            f"KMS ECC: an older stored copy of the KMS page gives {KMS_ECC_RPS} requests a second for "
            f"Sign and Verify on ECC keys, the figure most often quoted, and the one used above; the "
            f"newest stored copy gives {KMS_ECC_RPS_NEWER:,}. At {KMS_ECC_RPS_NEWER:,}, this flow's "
            f"{kms['ecc']} ECC request{'s' if kms['ecc'] > 1 else ''} would allow {newer:,.0f} "
            "onboardings a second (if it bound). Check the account's Service Quotas console before "
            "relying on either."
        )
    notes.append(
        f"API Gateway also allows bursts of {API_GATEWAY_BURST:,} requests above the steady rate (a token "
        "bucket); the ceiling above is the steady one. Lambda's 1,000 is the Region's default; the page "
        "warns that new accounts start lower and are raised with use."
    )
    if audit is None:
        notes.append("The audit indexes' ceiling was not computed in this run (Audit at scale did not run).")
    else:
        notes.append(
            "The audit indexes' per-partition ceiling is the one Audit at scale computes (its longest trail over "
            "the indexes' shards); the other rows count this flow's own writes."
        )
    notes.append(
        "DynamoDB's per-table rows count each table and each of its indexes apart; items keyed by flow spread "
        "over many partitions, so the per-partition quota binds only where every flow meets the same key "
        "(the partner's item, a shard of a sharded index)."
    )
    lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines)

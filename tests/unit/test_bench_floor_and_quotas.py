"""The benchmark's computed figures (issue [13]): the cost floor, the default-quota ceilings and the
binding quota, from given per-flow counts; and the report's targets as the texts quote them."""

from __future__ import annotations

import math

import pytest

from bench import prices, quotas
from bench.cpu_flow import SEAL_KMS_SIGNS, cost_floor
from bench.report import TARGETS, Section, limit, limit_text, target

STATE, AUDIT, PARTNERS = "myna-relay-test-state", "myna-relay-test-audit", "myna-relay-test-partners"


def flow_use(**changes: object) -> quotas.FlowUse:
    values: dict[str, object] = {
        "api_requests": 7,
        "billed_s": 0.25,
        "calls": {
            "kms.Sign": 2,
            "kms.Encrypt": 1,
            "kms.Decrypt": 1,
            "kms.GenerateMac": 2,
            "dynamodb.GetItem": 12,
        },
        "table_rru": {STATE: 10.0, PARTNERS: 2.0},
        "table_wru": {STATE: 60.0, AUDIT: 16.0},
        "index_wru": {f"{STATE}/by_due": 10.0, f"{AUDIT}/by_day": 8.0},
    }
    values.update(changes)
    return quotas.FlowUse(**values)  # type: ignore[arg-type]


def by_scope(rows: list[quotas.Ceiling]) -> dict[tuple[str, str], float]:
    return {(row.quota.key, row.scope): row.onboardings_per_s for row in rows}


def test_the_cost_floor_is_one_request_per_hop_one_write_per_state_change_and_the_seals_sign() -> None:
    # WHEN the floor of a flow of 7 hops, 6 of them changing state, at 1024 MB is computed
    floor = cost_floor(hops=7, state_changes=6, memory_mb=1024)
    # THEN each line is its count times the list price, per 10,000 flows
    lines = floor["usd_per_10k"]
    assert lines["api_gateway_rest"] == pytest.approx(7 * 4.25e-6 * 10_000)
    assert lines["lambda_requests"] == pytest.approx(7 * 0.2e-6 * 10_000)
    assert lines["lambda_duration"] == pytest.approx(
        7 * 0.001 * 1.0 * prices.LAMBDA_X86_USD_PER_GB_SECOND * 10_000
    )
    assert lines["dynamodb_writes"] == pytest.approx(6 * prices.DYNAMODB_USD_PER_WRU * 10_000)
    assert lines["kms"] == pytest.approx(SEAL_KMS_SIGNS * prices.KMS_ASYMMETRIC_USD_PER_REQUEST * 10_000)
    assert floor["total_usd_per_10k"] == pytest.approx(sum(lines.values()))
    # AND with today's prices that is about half a dollar
    assert floor["total_usd_per_10k"] == pytest.approx(0.506, abs=0.001)
    # AND it grows with the hops and the state changes the run measured
    assert (
        cost_floor(hops=8, state_changes=6, memory_mb=1024)["total_usd_per_10k"] > floor["total_usd_per_10k"]
    )
    assert (
        cost_floor(hops=7, state_changes=7, memory_mb=1024)["total_usd_per_10k"] > floor["total_usd_per_10k"]
    )


def test_each_quota_s_ceiling_is_the_quota_over_what_one_flow_consumes_of_it() -> None:
    # WHEN the ceilings of a flow are computed
    rows = by_scope(quotas.ceilings(flow_use(), sharded_indexes={"state/by_due": 8}))
    # THEN API Gateway takes 10,000 requests a second, 7 per flow
    assert rows[("api_gateway", "account")] == pytest.approx(10_000 / 7)
    # AND Lambda's 1,000 concurrent executions, at 0.25 billed seconds a flow
    assert rows[("lambda_concurrency", "Region")] == pytest.approx(1_000 / 0.25)
    # AND KMS: the ECC quota meters the 2 Signs, the symmetric one Encrypt, Decrypt and both HMACs
    assert rows[("kms_ecc", "account")] == pytest.approx(quotas.KMS_ECC_RPS / 2)
    assert rows[("kms_symmetric", "account")] == pytest.approx(quotas.KMS_SYMMETRIC_RPS / 4)
    assert math.isinf(rows[("kms_get_public_key", "account")])  # none per flow: no ceiling
    # AND DynamoDB: per table and per index, 40,000 units a second each
    assert rows[("dynamodb_table_write", "table state")] == pytest.approx(40_000 / 60)
    assert rows[("dynamodb_table_read", "table partners")] == pytest.approx(40_000 / 2)
    assert rows[("dynamodb_table_write", "index state/by_due")] == pytest.approx(40_000 / 10)
    # AND a sharded index takes 1,000 WCU a second on each of its shards
    assert rows[("dynamodb_partition_write", "index state/by_due, 8 shards")] == pytest.approx(8 * 1_000 / 10)


def test_the_binding_quota_is_the_lowest_ceiling_and_moves_with_the_measured_counts() -> None:
    # GIVEN a flow whose 60 WRU on the state table allow 667 onboardings a second
    rows = quotas.ceilings(flow_use())
    # WHEN it signs twice with an ECC key at the lower documented quota (300 a second)
    bound = quotas.binding(rows)
    # THEN the ECC quota binds (300 / 2 = 150 a second)
    assert (bound.quota.key, math.floor(bound.onboardings_per_s)) == ("kms_ecc", quotas.KMS_ECC_RPS // 2)
    # WHEN the flow signs once (the webhook event signed another way)
    calls = {"kms.Sign": 1, "kms.Encrypt": 1, "kms.Decrypt": 1, "kms.GenerateMac": 2}
    bound = quotas.binding(quotas.ceilings(flow_use(calls=calls)))
    # THEN it still binds, at twice the rate
    assert (bound.quota.key, bound.onboardings_per_s) == ("kms_ecc", quotas.KMS_ECC_RPS)
    # WHEN no flow signs at all (a thought experiment), the state table's writes bind
    bound = quotas.binding(quotas.ceilings(flow_use(calls={"kms.Encrypt": 1})))
    assert (bound.quota.key, bound.scope) == ("dynamodb_table_write", "table state")
    assert bound.onboardings_per_s == pytest.approx(40_000 / 60)


def test_hot_keys_and_the_audit_indexes_own_ceiling_take_part() -> None:
    # WHEN every flow reads the same partner item, and the audit indexes take 100 onboardings a second
    rows = quotas.ceilings(
        flow_use(),
        hot_read_tables={"partners": "one partner's item"},
        audit_indexes_per_s=100,
    )
    scoped = by_scope(rows)
    # THEN the partner's partition takes 3,000 RRU a second, 2 per flow
    assert scoped[("dynamodb_partition_read", "table partners: one partner's item")] == pytest.approx(1_500)
    # AND the audit indexes' ceiling is taken as computed, and binds
    bound = quotas.binding(rows)
    assert bound.quota.key == "dynamodb_partition_write_audit"
    assert bound.onboardings_per_s == 100


def test_kms_operations_are_metered_by_their_quota_class_and_unknown_ones_are_not_dropped() -> None:
    calls = {
        "kms.Sign": 1,
        "kms.Verify": 1,
        "kms.GenerateDataKey": 2,
        "kms.VerifyMac": 1,
        "kms.DescribeKey": 3,
    }
    assert quotas.kms_by_class({**calls, "dynamodb.GetItem": 5}) == {
        "ecc": 2,
        "symmetric": 3,
        "unmapped DescribeKey": 3,
    }


def test_the_quota_section_is_computed_from_the_flow_section_of_the_same_run() -> None:
    # GIVEN the CPU-flow section's per-flow use and the audit section's figure
    use = flow_use()
    flow = Section("CPU per complete flow, AWS calls and cost", data={"quota_use": vars(use)})
    audit = Section("Audit at scale", figures={"audit_partner_max_onboardings_per_s": 2285})
    # WHEN the quota section is derived
    derived = quotas.section([flow, audit])
    # THEN it carries the figure, the binding quota and its source
    assert derived is not None
    assert derived.figures == {quotas.FIGURE: quotas.KMS_ECC_RPS // 2}
    assert derived.data["binding"]["quota"] == "kms_ecc"
    assert quotas.SOURCES["kms"] in derived.detail
    assert "Binding: KMS cryptographic operations (ECC)" in derived.detail
    # AND without the flow section there is nothing to derive
    assert quotas.section([audit]) is None


def test_targets_are_the_issue_s_and_the_texts_quote_them_from_one_place() -> None:
    assert limit("aws_calls_per_flow") == 16
    assert limit("usd_per_10k_flows") == 0.90
    assert limit("cpu_floor_ratio") == 6
    assert limit("cold_start_ratio") == 1.5
    assert limit_text("aws_calls_per_flow") == "≤ 16 calls"
    assert limit_text("cpu_floor_ratio") == "≤ 6x"
    assert limit_text(quotas.FIGURE) == "≥ 250 /s"
    # the floor and its ratio are reported, with no target
    for key in ("usd_floor_per_10k", "usd_floor_ratio"):
        assert target(key).limit is None
        assert target(key).met(1.0) is None
        assert limit_text(key) == "no target"
    assert len({t.key for t in TARGETS}) == len(TARGETS)

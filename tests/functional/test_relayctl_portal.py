"""`relayctl portal check-mapping`: a mapping is validated as the service validates it at start-up,
and a sample result is shown as the relay would read it, by names and counts, never by value."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.domain.portal_mapping import DEFAULT_MAPPING_FILE
from relayctl.cli import main

SECRET_AMOUNT = "3580017"  # values of the sample: none may be printed
SECRET_LOT = "LOT-Z9Q7"
KAWASAKI = "神奈川県川崎市"


class Run:
    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err


def relayctl(*argv: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return Run(status, out.getvalue(), err.getvalue())


def sample(tmp_path: Path, document: Any, *, as_answer: bool = True) -> str:
    inner = json.dumps(document, ensure_ascii=True)
    body = {"commonHeader": {"errorCode": ""}, "selfPersonalDataProvisionInfo": {"selfPersonalData": inner}}
    path = tmp_path / "result.json"
    path.write_text(json.dumps(body if as_answer else document, ensure_ascii=False), encoding="utf-8")
    return str(path)


GROUPED = [
    {
        KAWASAKI: {
            "地方税関係情報": {
                "課税年度": "令和8年度",
                "所得情報": {"合計所得金額": SECRET_AMOUNT, "雑所得額": "1"},
            },
            "予防接種情報": [{"予防接種の種類": "BCG", "接種日": "20220510", "ロット番号": SECRET_LOT}],
        }
    }
]


def test_the_shipped_mapping_is_valid_and_summarised() -> None:
    run = relayctl("portal", "check-mapping", str(DEFAULT_MAPPING_FILE))
    assert run.status == 0, run.err
    assert "valid" in run.out
    assert "local_tax [TM000000000002]" in run.out
    assert "required fiscal_year" in run.out


def test_a_sample_is_shown_by_names_and_counts_never_values(tmp_path: Path) -> None:
    run = relayctl(
        "portal", "check-mapping", str(DEFAULT_MAPPING_FILE), "--sample", sample(tmp_path, GROUPED)
    )
    assert run.status == 0, run.err
    assert "as local_tax: records: 1 record(s)" in run.out
    assert "total_income 1" in run.out
    assert "所得情報/雑所得額: 1 value(s)  (unmapped)" in run.out
    assert "unknown_field 1" in run.out
    assert "as vaccination: records: 1 record(s)" in run.out
    for value in (SECRET_AMOUNT, SECRET_LOT, "BCG", "令和8年度", "20220510"):
        assert value not in run.out + run.err


def test_the_json_report_names_the_outcome_per_dataset(tmp_path: Path) -> None:
    path = sample(tmp_path, GROUPED, as_answer=False)
    run = relayctl("portal", "check-mapping", str(DEFAULT_MAPPING_FILE), "--sample", path, "--json")
    assert run.status == 0, run.err
    report = json.loads(run.out)
    outcomes = {outcome["dataset"]: outcome for outcome in report["sample"]["outcomes"]}
    assert (outcomes["local_tax"]["records"], outcomes["local_tax"]["fields"]["fiscal_year"]) == (1, 1)
    assert SECRET_AMOUNT not in run.out


def test_a_sample_the_relay_could_not_read_is_the_named_failure_and_exit_1(tmp_path: Path) -> None:
    renamed = [{KAWASAKI: {"課税証明情報": [{"課税年度": "2026", "合計所得金額": SECRET_AMOUNT}]}}]
    run = relayctl(
        "portal", "check-mapping", str(DEFAULT_MAPPING_FILE), "--sample", sample(tmp_path, renamed)
    )
    assert run.status == 1
    assert "dataset key 課税証明情報: UNKNOWN (not in the mapping), 1 record(s)" in run.out
    assert "as local_tax: FAILS unreadable_result (result.unreadable)" in run.out
    assert "would fail a flow" in run.err
    assert SECRET_AMOUNT not in run.out + run.err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{", "is not JSON"),
        ('{"version": 1, "datasets": {}}', "no mapping for dataset local_tax, vaccination"),
    ],
)
def test_a_broken_mapping_is_refused_naming_the_setting(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(content, encoding="utf-8")
    run = relayctl("portal", "check-mapping", str(path))
    assert run.status == 1
    assert "RELAY_PORTAL_MAPPING_FILE" in run.err
    assert problem in run.err


def test_a_sample_that_is_not_a_result_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"commonHeader": {}}', encoding="utf-8")
    run = relayctl("portal", "check-mapping", str(DEFAULT_MAPPING_FILE), "--sample", str(path))
    assert (run.status, "selfPersonalData" in run.err) == (1, True)

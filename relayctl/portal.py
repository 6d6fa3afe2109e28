"""``relayctl portal check-mapping FILE [--sample RESULT.json]``: is a portal mapping usable, and what
would the relay make of a sample result under it?

An operator tool, run on a sample (the portal's test environment, or a synthetic one) when the real
interface specification corrects the inferred names. It prints NAMES, types and counts and the
outcome the relay would reach (records, or the named failure), never a value: a sample from the
portal's test environment is still a resident's data. Needs no AWS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO, get_args

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.normalise import MalformedResult, UnreadableResult, normalise, survey
from chalicelib.domain.portal_mapping import MappingError, PortalMapping, load_mapping

MAX_SAMPLE_BYTES = 8_000_000
DATASET_IDS: tuple[DatasetId, ...] = get_args(DatasetId)


class CheckError(RuntimeError):
    """The mapping or the sample cannot be used; printed without a traceback."""


def self_personal_data_of(text: str) -> str:
    """The ``selfPersonalData`` string of a sample: the whole IF001-06 answer, the string itself
    (a JSON string), or the decoded document (a list)."""
    try:
        document = json.loads(text)
    except ValueError:
        raise CheckError("the sample is not JSON") from None
    if isinstance(document, dict):
        info = document.get("selfPersonalDataProvisionInfo")
        inner = info.get("selfPersonalData") if isinstance(info, dict) else None
        if not isinstance(inner, str):
            raise CheckError("the sample is an object without selfPersonalDataProvisionInfo.selfPersonalData")
        return inner
    if isinstance(document, str):
        return document
    return json.dumps(document, ensure_ascii=False)


def check_mapping(mapping_file: str, sample_file: str | None, out: TextIO, *, as_json: bool = False) -> bool:
    """Print the mapping's summary and, with a sample, what each dataset would yield; True when
    every requested outcome is records (or no data), False when one would fail."""
    try:
        mapping = load_mapping(str(Path(mapping_file).resolve()))
    except MappingError as exc:
        raise CheckError(str(exc)) from None
    report: dict[str, Any] = {"mapping": mapping_file, "datasets": describe(mapping)}
    ok = True
    if sample_file is not None:
        data = self_personal_data_of(read_sample(sample_file))
        report["sample"] = sample_report(data, mapping)
        ok = all(outcome["outcome"] in ("records", "no_data") for outcome in report["sample"]["outcomes"])
    if as_json:
        print(json.dumps(report, ensure_ascii=False, indent=2), file=out)
    else:
        print_report(report, out)
    return ok


def read_sample(sample_file: str) -> str:
    path = Path(sample_file)
    try:
        if path.stat().st_size > MAX_SAMPLE_BYTES:
            raise CheckError(f"{sample_file} is larger than {MAX_SAMPLE_BYTES} bytes")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CheckError(f"cannot read {sample_file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CheckError(f"{sample_file} is not UTF-8 text") from None


def describe(mapping: PortalMapping) -> dict[str, Any]:
    return {
        dataset_id: {
            "names": list(spec.names),
            "code": spec.code,
            "required": list(spec.required),
            "fields": {
                name: {"type": field.type, "paths": list(field.paths)} for name, field in spec.fields.items()
            },
        }
        for dataset_id, spec in mapping.datasets.items()
    }


def sample_report(data: str, mapping: PortalMapping) -> dict[str, Any]:
    outcomes: list[dict[str, Any]] = []
    for dataset_id in DATASET_IDS:
        try:
            result = normalise(data, dataset=dataset_id, mapping=mapping, max_bytes=MAX_SAMPLE_BYTES)
        except UnreadableResult as refused:
            outcomes.append(
                {
                    "dataset": dataset_id,
                    "outcome": "unreadable_result",
                    "failure_reason": "result.unreadable",
                    "path": refused.path,
                    "detail": refused.detail,
                }
            )
            continue
        except MalformedResult as refused:
            outcomes.append(
                {
                    "dataset": dataset_id,
                    "outcome": "malformed",
                    "failure_reason": refused.check,
                    "detail": refused.detail,
                }
            )
            continue
        fields: dict[str, int] = {}
        for record in result.records:
            for name, value in record.model_dump(exclude_none=True).items():
                fields[name] = fields.get(name, 0) + (value is not None)
        outcomes.append(
            {
                "dataset": dataset_id,
                "outcome": "records" if result.records else "no_data",
                "records": len(result.records),
                "fields": fields,
                "dropped": {reason: count for reason, count in result.dropped.items() if count},
                "individual_numbers_removed": result.individual_numbers_removed,
            }
        )
    try:
        entries = [
            {
                "key": entry.key,
                "dataset": entry.dataset,
                "records": entry.records,
                "paths": dict(entry.paths),
                "unmapped_paths": list(entry.unmapped),
            }
            for entry in survey(data, mapping=mapping, max_bytes=MAX_SAMPLE_BYTES)
        ]
    except MalformedResult:
        entries = []
    return {"outcomes": outcomes, "datasets_in_sample": entries}


def print_report(report: dict[str, Any], out: TextIO) -> None:
    print(f"mapping {report['mapping']}: valid", file=out)
    for dataset_id, spec in report["datasets"].items():
        code = f" [{spec['code']}]" if spec["code"] else ""
        print(
            f"  {dataset_id}{code}: names {', '.join(spec['names'])}; {len(spec['fields'])} fields;"
            f" required {', '.join(spec['required']) or '(none)'}",
            file=out,
        )
    sample = report.get("sample")
    if sample is None:
        return
    print("sample:", file=out)
    for entry in sample["datasets_in_sample"]:
        known = entry["dataset"] or "UNKNOWN (not in the mapping)"
        print(f"  dataset key {entry['key']}: {known}, {entry['records']} record(s)", file=out)
        for path, count in entry["paths"].items():
            mark = "  (unmapped)" if path in entry["unmapped_paths"] else ""
            print(f"    {path}: {count} value(s){mark}", file=out)
    for outcome in sample["outcomes"]:
        if outcome["outcome"] in ("records", "no_data"):
            fields = ", ".join(f"{name} {count}" for name, count in outcome["fields"].items())
            dropped = ", ".join(f"{reason} {count}" for reason, count in outcome["dropped"].items()) or "none"
            print(
                f"  as {outcome['dataset']}: {outcome['outcome']}: {outcome['records']} record(s)"
                f" [{fields}]; dropped: {dropped}; individual numbers removed:"
                f" {outcome['individual_numbers_removed']}",
                file=out,
            )
        else:
            print(
                f"  as {outcome['dataset']}: FAILS {outcome['outcome']} ({outcome['failure_reason']}):"
                f" {outcome['detail']}",
                file=out,
            )

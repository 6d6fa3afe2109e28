"""The reader of ``selfPersonalData`` (IF001-06): the portal's JSON-in-a-string becomes typed records.

It exists so that exactly one function reads what the portal sends, in a fixed order: size, JSON,
the Individual Number guard over every key and value at any depth (番号法 第19条: we must never keep
one), then the shape, and only then the mapping (``portal_mapping``: dataset names, field paths,
types, required fields; DATA, replaceable per deployment) to typed fields (``records``).

It is tolerant of layout and exact about values: groups nested to any depth (up to ``MAX_DEPTH``),
arrays of single-key objects read as one group, ``null`` as absent, several municipalities, exact
duplicate records folded (and counted); dates in ``YYYYMMDD``, ``YYYYMM``, ``YYYY-MM-DD`` and
wareki (令和8年4月1日, 元年); amounts with full-width digits, commas and ``△``/``▲``/``−``/``-`` for a
negative. An unknown field is dropped and counted; a value that cannot be read is dropped and
counted. What it cannot read as a whole is a named failure, never "no records":
``UnreadableResult`` (``result.unreadable``) when no dataset of the result is recognised, or a
record of the requested dataset lacks a field the mapping requires. An empty list (the portal's
"no data") is a result without records.

It must never put the payload, or any part of it, into an exception, a ``repr`` or a log line: the
counts in ``NormalisedResult.dropped`` say what happened without saying what the data was, and an
``UnreadableResult`` names the dataset and the mapping's path, never a value or a key it received.
"""

from __future__ import annotations

import contextlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal, get_args

from pydantic import ValidationError

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.errors import ErrorCategory, RelayError
from chalicelib.domain.individual_number import contains_individual_number
from chalicelib.domain.portal_mapping import (
    PATH_SEPARATOR,
    DatasetSpec,
    FieldSpec,
    PortalMapping,
    default_mapping,
)
from chalicelib.domain.records import (
    MAX_AMOUNT,
    MAX_TEXT_LENGTH,
    RECORD_MODELS,
    DatasetRecord,
    LocalTaxRecord,
    VaccinationRecord,
)

DEFAULT_MAX_BYTES: Final = 2_000_000
# Groups deeper than this are not a layout anyone writes by hand; refusing them keeps the walk bounded.
MAX_DEPTH: Final = 32

DropReason = Literal[
    "unknown_dataset",  # a dataset name the mapping does not know: its records (counted per record)
    "other_dataset",  # a known dataset other than the one requested: its records (per record)
    "unknown_field",  # a value at a path the mapping does not know (per value)
    "invalid_value",  # a value its converter cannot read, or two values of one field that disagree
    "blank_value",  # an empty, whitespace-only or null value: treated as absent (per value)
    "empty_record",  # a record with no field left after everything above (per record)
    "duplicate_record",  # an exact duplicate of a record already read (folded, per record)
]
DROP_REASONS: Final[tuple[DropReason, ...]] = get_args(DropReason)

Scalar = str | int | float
Converted = int | str | date
Path = tuple[str, ...]
Leaves = dict[Path, list[Scalar | None]]


class MalformedResult(RelayError):
    """IF001-06 answered, but ``selfPersonalData`` is not a document this parser can read.

    ``check`` is ``result.size``, ``result.json``, ``result.shape`` or (``UnreadableResult``)
    ``result.unreadable``; ``detail`` names the rule that failed and, at most, a position or a path
    of the mapping, never a key or a value of the payload.
    """

    code: ClassVar[str] = "malformed-result"
    category: ClassVar[ErrorCategory] = "unavailable"
    title: ClassVar[str] = "The portal's result could not be read"


class UnreadableResult(MalformedResult):
    """The portal answered with data the relay could not read (``unreadable_result``): not "no
    data". ``dataset`` is the requested dataset; ``path`` is where reading stopped: ``"dataset"``
    when no dataset of the result is recognised, else the mapping's name of the missing field."""

    code: ClassVar[str] = "unreadable-result"

    def __init__(self, detail: str, *, dataset: DatasetId, path: str) -> None:
        super().__init__(detail, check="result.unreadable")
        self.dataset = dataset
        self.path = path


@dataclass(frozen=True, repr=False)
class NormalisedResult:
    """Typed records of one dataset, and counts of what was dropped on the way (never the values).

    ``dropped`` has every key of ``DROP_REASONS`` (zero when nothing was dropped for that reason).
    ``individual_numbers_removed`` counts removed items (a value, or a whole group, dataset or
    municipality entry whose key held one), not distinct numbers.
    """

    dataset: DatasetId
    records: tuple[LocalTaxRecord, ...] | tuple[VaccinationRecord, ...]
    dropped: Mapping[str, int] = field(default_factory=dict)
    individual_numbers_removed: int = 0

    def __post_init__(self) -> None:
        counts: dict[str, int] = {**dict.fromkeys(DROP_REASONS, 0), **self.dropped}
        object.__setattr__(self, "dropped", MappingProxyType(counts))

    def __repr__(self) -> str:
        return (
            f"NormalisedResult(dataset={self.dataset!r}, records=<{len(self.records)} withheld>, "
            f"dropped={dict(self.dropped)!r}, individual_numbers_removed={self.individual_numbers_removed})"
        )


def normalise(
    self_personal_data: str,
    *,
    dataset: DatasetId,
    max_bytes: int = DEFAULT_MAX_BYTES,
    mapping: PortalMapping | None = None,
) -> NormalisedResult:
    """Read ``selfPersonalData`` into the records of ``dataset`` under ``mapping`` (default: the
    shipped one); raise ``MalformedResult`` for a payload that is too large, not JSON or not shaped
    as a list of ``{municipality: {dataset: records}}``, and ``UnreadableResult`` for one whose
    datasets or records the mapping cannot read. Pure: no I/O."""
    mapping = mapping or default_mapping()
    _check_size(self_personal_data, max_bytes)
    document = _decode(self_personal_data)
    if isinstance(document, str):  # the inner JSON encoded once more: read it, once
        _check_size(document, max_bytes)
        document = _decode(document)
    tally = _Tally()
    document = _scrub(document, tally, 0)
    entries = _entries(document)
    records = _read(entries, dataset, mapping, tally)
    typed: tuple[LocalTaxRecord, ...] | tuple[VaccinationRecord, ...]
    if dataset == "local_tax":
        typed = tuple(record for record in records if isinstance(record, LocalTaxRecord))
    else:
        typed = tuple(record for record in records if isinstance(record, VaccinationRecord))
    return NormalisedResult(
        dataset=dataset,
        records=typed,
        dropped=tally.dropped,
        individual_numbers_removed=tally.individual_numbers,
    )


@dataclass
class _Tally:
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    individual_numbers: int = 0

    def drop(self, reason: DropReason, count: int = 1) -> None:
        self.dropped[reason] += count


# -- size, JSON ------------------------------------------------------------------------------------


def _check_size(text: str, max_bytes: int) -> None:
    # len(text) bounds the UTF-8 size from below, so a huge payload is refused before encoding it;
    # surrogatepass: a lone surrogate (legal in a JSON string escape) must not make this step crash.
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise MalformedResult(f"selfPersonalData is larger than {max_bytes} bytes", check="result.size")


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate keys would let one spelling of a field hide another (RFC 8259 section 4 leaves the
    # outcome to the parser); refuse them rather than guess which one the portal meant.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey("duplicate key")
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e400 overflows to infinity
        raise ValueError("number out of range")
    return value


def _decode(text: str) -> object:
    # The decoder's own error is swallowed, not chained: JSONDecodeError keeps the whole document in
    # its ``doc`` attribute, and an exception context ends up in error reports.
    with contextlib.suppress(ValueError, RecursionError):
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    raise MalformedResult(
        "selfPersonalData is not a JSON document (or has duplicate keys, NaN or Infinity)",
        check="result.json",
    )


def _shape_error(detail: str) -> MalformedResult:
    return MalformedResult(detail, check="result.shape")


# -- the Individual Number guard -----------------------------------------------------------------


def _scalar_holds_individual_number(value: object) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, float):
        # Both spellings: 123456789018.0 as written, and 6.21498320257e+20 as the integer it is.
        return contains_individual_number(repr(value)) or (
            value.is_integer() and contains_individual_number(int(value))
        )
    if isinstance(value, str | int):
        return contains_individual_number(value)
    return False


_REMOVED: Final = object()


def _scrub(node: object, tally: _Tally, depth: int) -> object:
    """``node`` without any item whose key or value holds a valid Individual Number, at any depth
    (a value; or the whole object member, group, dataset or municipality whose key holds one)."""
    if depth > MAX_DEPTH:
        raise _shape_error(f"selfPersonalData is nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, dict):
        kept: dict[str, object] = {}
        for key, value in node.items():
            if contains_individual_number(key):
                tally.individual_numbers += 1
                continue
            cleaned = _scrub(value, tally, depth + 1)
            if cleaned is not _REMOVED:
                kept[key] = cleaned
        return kept
    if isinstance(node, list):
        items = [_scrub(item, tally, depth + 1) for item in node]
        return [item for item in items if item is not _REMOVED]
    if _scalar_holds_individual_number(node):
        tally.individual_numbers += 1
        return _REMOVED
    return node


# -- shape: municipalities, datasets, records, leaves --------------------------------------------------


def _entries(document: object) -> list[tuple[str, dict[str, object]]]:
    """(municipality, its datasets) for each municipality; ``null`` is a result without data."""
    if document is None:
        return []
    if not isinstance(document, list):
        raise _shape_error("selfPersonalData is not a list")
    entries: list[tuple[str, dict[str, object]]] = []
    for index, entry in enumerate(document):
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise _shape_error(f"selfPersonalData[{index}] is not an object of municipalities")
        for municipality, datasets in entry.items():
            if datasets is not None and not isinstance(datasets, dict):
                raise _shape_error(f"selfPersonalData[{index}] does not hold an object of datasets")
            entries.append((municipality, datasets or {}))
    return entries


def _is_single_key_object(item: object) -> bool:
    return isinstance(item, dict) and len(item) == 1


def _raw_records(value: object, where: str) -> list[object]:
    """The records of one dataset: ``null`` (none), one object (a grouped record), or a list of
    records, each an object or an array of single-key objects. [I] A list of two or more
    single-key objects with distinct keys is one record spread over an array, never several
    one-field records (every dataset requires a field, so two records repeat a key)."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise _shape_error(f"{where} is neither a record nor a list of records")
    items = [item for item in value if item is not None]
    if len(items) >= 2 and all(_is_single_key_object(item) for item in items):
        keys = [next(iter(item)) for item in items if isinstance(item, dict)]
        if len(set(keys)) == len(keys):
            return [items]
    for number, item in enumerate(items):
        if not isinstance(item, dict | list):
            raise _shape_error(f"{where} record {number} is not an object")
    return items


def _leaves(record: object, where: str) -> Leaves:
    """Every value of a record by its path of group names; arrays are transparent (their elements
    are read under the same path), so an array of single-key objects reads as one group."""
    leaves: Leaves = {}
    stack: list[tuple[Path, object, int]] = [((), record, 0)]
    while stack:
        path, node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _shape_error(f"{where} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend(((*path, key), value, depth + 1) for key, value in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((path, item, depth + 1) for item in reversed(node))
        elif isinstance(node, bool) or not (node is None or isinstance(node, str | int | float)):
            raise _shape_error(f"{where} has a value that is not a string, number or null")
        elif path:
            leaves.setdefault(path, []).append(node)
        else:
            raise _shape_error(f"{where} is not an object")
    return leaves


def _count_records(value: object) -> int:
    if isinstance(value, list):
        return sum(1 for item in value if item is not None)
    return 0 if value is None else 1


# -- reading ------------------------------------------------------------------------------------------


def _read(
    entries: list[tuple[str, dict[str, object]]], dataset: DatasetId, mapping: PortalMapping, tally: _Tally
) -> list[DatasetRecord]:
    spec = mapping.datasets.get(dataset)
    if spec is None:
        raise UnreadableResult(
            "the mapping has no entry for the requested dataset", dataset=dataset, path="dataset"
        )
    records: list[DatasetRecord] = []
    seen: set[tuple[object, ...]] = set()
    names_seen = recognised = 0
    for index, (municipality, datasets) in enumerate(entries):
        for position, (name, value) in enumerate(datasets.items()):
            names_seen += 1
            where = f"selfPersonalData[{index}] dataset {position}"
            dataset_id = mapping.dataset_of(name)
            if dataset_id is None:
                tally.drop("unknown_dataset", _count_records(value))
                continue
            recognised += 1
            raws = _raw_records(value, where)
            if dataset_id != dataset:
                tally.drop("other_dataset", len(raws))
                continue
            if not raws:
                continue
            provider = _text(municipality)
            if provider is None:
                raise UnreadableResult(
                    f"{where}: the municipality key is not a name", dataset=dataset, path="municipality"
                )
            for number, raw in enumerate(raws):
                record = _build_record(
                    dataset, spec, provider, _leaves(raw, f"{where} record {number}"), tally
                )
                if record is None:
                    continue
                identity = (type(record), *sorted(record.model_dump(exclude_none=True).items()))
                if identity in seen:
                    tally.drop("duplicate_record")
                    continue
                seen.add(identity)
                records.append(record)
    if names_seen and not recognised:
        raise UnreadableResult(
            f"none of the result's {names_seen} dataset names is in the mapping",
            dataset=dataset,
            path="dataset",
        )
    return records


def _build_record(
    dataset: DatasetId, spec: DatasetSpec, provider: str, leaves: Leaves, tally: _Tally
) -> DatasetRecord | None:
    values: dict[str, Converted] = {}
    claimed: set[Path] = set()
    for name, field_spec in spec.fields.items():
        found: list[Scalar | None] = []
        for path in field_spec.split_paths:
            if path in leaves:
                claimed.add(path)
                found.extend(leaves[path])
        value = _field_value(field_spec, found, tally)
        if value is not None:
            values[name] = value
    tally.drop("unknown_field", sum(len(found) for path, found in leaves.items() if path not in claimed))
    record = _validated(RECORD_MODELS[dataset], provider, values, tally)
    missing = [name for name in spec.required if record is None or getattr(record, name) is None]
    if missing:
        paths = " or ".join(spec.fields[missing[0]].paths)
        raise UnreadableResult(
            f"a {dataset} record has no readable {missing[0]} ({paths})", dataset=dataset, path=missing[0]
        )
    return record


def _field_value(spec: FieldSpec, found: list[Scalar | None], tally: _Tally) -> Converted | None:
    """The one value of a field: blanks are absent, unreadable values dropped, and values that
    disagree (two layouts, or an array, giving two different values) are all dropped."""
    converted: set[Converted] = set()
    for raw in found:
        text = None if raw is None else _as_text(raw)
        if raw is None or (text is not None and not text.strip()):
            tally.drop("blank_value")
            continue
        value = None if text is None else convert(spec, text)
        if value is None:
            tally.drop("invalid_value")
        elif not isinstance(value, date) and contains_individual_number(value):
            # Defence in depth: a converted value is checked again, whatever the converter did.
            tally.individual_numbers += 1
        else:
            converted.add(value)
    if len(converted) > 1:
        tally.drop("invalid_value", len(converted))
        return None
    return converted.pop() if converted else None


def _validated(
    model: type[LocalTaxRecord] | type[VaccinationRecord],
    provider: str,
    values: dict[str, Converted],
    tally: _Tally,
) -> DatasetRecord | None:
    """The record, dropping (and counting) any field the model still refuses. The converters mirror
    the model's constraints, so this loop is a safety net; its ValidationError, which quotes the
    input, never leaves this function."""
    while values:
        try:
            return model.model_validate({"municipality": provider, **values})
        except ValidationError as exc:
            refused = {str(error["loc"][0]) for error in exc.errors(include_input=False) if error["loc"]}
        refused &= set(values)
        if not refused:
            tally.drop("invalid_value")
            return None
        for name in refused:
            del values[name]
            tally.drop("invalid_value")
    tally.drop("empty_record")
    return None


# -- converters: portal text → typed value, or None when it cannot be read ----------------------------

_PLAIN_DIGITS: Final = re.compile(r"[0-9]+")
_GROUPED_DIGITS: Final = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+")  # thousands separators, grouped right
_MAX_AMOUNT_DIGITS: Final = len(str(MAX_AMOUNT))
# △ and ▲ are how Japanese tax forms write a negative; U+2212 is the minus sign (NFKC keeps it).
_NEGATIVE_SIGNS: Final = ("△", "▲", "\u2212", "-")


def _as_text(value: Scalar) -> str | None:
    """The portal sends strings; a JSON number is read as the integer it spells, or not at all."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    return str(value)


def _folded(text: str) -> str:
    # NFKC turns full-width digits, the full-width comma and hyphen into ASCII.
    return unicodedata.normalize("NFKC", text).strip()


def _amount(text: str) -> int | None:
    """Non-negative integer (yen or a count): ``3560000``, ``3,560,000``, ``３５６００００``."""
    folded = _folded(text)
    if not (_PLAIN_DIGITS.fullmatch(folded) or _GROUPED_DIGITS.fullmatch(folded)):
        return None
    digits = folded.replace(",", "").lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_AMOUNT_DIGITS else None


def _signed_amount(text: str) -> int | None:
    """An amount that may be negative: ``△120,000``, ``▲120000``, ``−120000``, ``-120000``."""
    folded = _folded(text)
    for sign in _NEGATIVE_SIGNS:
        if folded.startswith(sign):
            magnitude = _amount(folded[len(sign) :])
            return None if magnitude is None else -magnitude
    return _amount(folded)


# [C] the first day of each era (明治 from the Gregorian calendar's adoption is not needed here: no
# resident's record predates it). The era's first year is 元年 (year 1).
_ERAS: Final[dict[str, date]] = {
    "明治": date(1868, 10, 23),
    "大正": date(1912, 7, 30),
    "昭和": date(1926, 12, 25),
    "平成": date(1989, 1, 8),
    "令和": date(2019, 5, 1),
}
_ERA_ORDER: Final = tuple(_ERAS)
_WAREKI: Final = re.compile(
    r"(?P<era>明治|大正|昭和|平成|令和)(?P<year>元|[0-9]{1,2})年"
    r"(?:度|(?P<month>[0-9]{1,2})月(?:(?P<day>[0-9]{1,2})日)?)?"
)


def _wareki(folded: str) -> tuple[int, int | None, int | None] | None:
    """(Gregorian year, month, day) of a wareki spelling, checked against its era's bounds."""
    match = _WAREKI.fullmatch(folded)
    if match is None:
        return None
    era = match["era"]
    era_year = 1 if match["year"] == "元" else int(match["year"])
    if era_year < 1:
        return None
    start = _ERAS[era]
    year = start.year + era_year - 1
    month = int(match["month"]) if match["month"] else None
    day = int(match["day"]) if match["day"] else None
    following = _ERA_ORDER.index(era) + 1
    end = _ERAS[_ERA_ORDER[following]] if following < len(_ERA_ORDER) else None
    if end is not None and year > end.year:
        return None
    if month is not None:
        try:
            given = date(year, month, day or 1)
        except ValueError:
            return None
        last_day = given if day is not None else _month_end(given)
        if last_day < start or (end is not None and given >= end):
            return None
    return year, month, day


def _month_end(first: date) -> date:
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return date.fromordinal(following.toordinal() - 1)


def _fiscal_year(text: str) -> int | None:
    """``2026``, ``2026年度``, ``令和8年度``, ``令和元年``."""
    folded = _folded(text)
    plain = re.fullmatch(r"([0-9]{4})(?:年度?)?", folded)
    if plain:
        return int(plain[1]) if plain[1] >= "1000" else None
    wareki = _wareki(folded)
    return wareki[0] if wareki is not None and wareki[1] is None else None


def _date(text: str) -> date | None:
    """``YYYYMMDD``, ``YYYY-MM-DD`` (or ``/``), wareki ``令和8年4月1日``; ``YYYYMM`` and ``令和8年4月``
    read as the first of the month."""
    folded = _folded(text)
    year: int | None = None
    if re.fullmatch(r"[0-9]{6}(?:[0-9]{2})?", folded):
        year, month, day = int(folded[:4]), int(folded[4:6]), int(folded[6:8]) if len(folded) == 8 else 1
    elif match := re.fullmatch(r"([0-9]{4})([-/])([0-9]{2})\2([0-9]{2})", folded):
        year, month, day = int(match[1]), int(match[3]), int(match[4])
    elif (wareki := _wareki(folded)) is not None and wareki[1] is not None:
        year, month, day = wareki[0], wareki[1], wareki[2] or 1
    if year is None:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _text(text: str) -> str | None:
    """Free text as the municipality wrote it (not NFKC-folded: names keep their spelling), trimmed;
    refused when too long or holding control characters or lone surrogates."""
    stripped = text.strip()
    if not stripped or len(stripped) > MAX_TEXT_LENGTH:
        return None
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in stripped):
        return None
    return stripped


Converter = Callable[[str], Converted | None]
_BY_TYPE: Final[Mapping[str, Converter]] = MappingProxyType(
    {
        "text": _text,
        "date": _date,
        "year": _fiscal_year,
        "amount": _amount,
        "count": _amount,
        "signed_amount": _signed_amount,
    }
)


def convert(spec: FieldSpec, text: str) -> Converted | None:
    """One portal value as the field's type, or ``None`` when it cannot be read."""
    if spec.type == "enum":
        return (spec.values or {}).get(_folded(text))
    return _BY_TYPE[spec.type](text)


def converters(mapping: PortalMapping) -> Mapping[DatasetId, Mapping[str, Converter]]:
    """Each field's converter under ``mapping``, by dataset and field name."""

    def bound(spec: FieldSpec) -> Converter:
        return lambda text: convert(spec, text)

    return MappingProxyType(
        {
            dataset_id: MappingProxyType({name: bound(spec) for name, spec in dataset.fields.items()})
            for dataset_id, dataset in mapping.datasets.items()
        }
    )


CONVERTERS: Final[Mapping[DatasetId, Mapping[str, Converter]]] = converters(default_mapping())


@dataclass(frozen=True)
class DatasetSurvey:
    """One dataset entry of a result, by NAMES only (for ``relayctl portal check-mapping``): its key,
    the dataset the mapping makes of it (None: unknown), how many records it holds, and how many
    values sit at each path, with the paths the mapping does not know."""

    key: str
    dataset: DatasetId | None
    records: int
    paths: Mapping[str, int]
    unmapped: tuple[str, ...]


def survey(
    self_personal_data: str, *, mapping: PortalMapping | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[DatasetSurvey, ...]:
    """The names and counts of a result under ``mapping``, after the Individual Number guard (a key
    holding a number is gone before anything is named); ``MalformedResult`` as ``normalise``."""
    mapping = mapping or default_mapping()
    _check_size(self_personal_data, max_bytes)
    document = _decode(self_personal_data)
    if isinstance(document, str):
        _check_size(document, max_bytes)
        document = _decode(document)
    document = _scrub(document, _Tally(), 0)
    found: list[DatasetSurvey] = []
    for index, (_, datasets) in enumerate(_entries(document)):
        for position, (key, value) in enumerate(datasets.items()):
            where = f"selfPersonalData[{index}] dataset {position}"
            dataset_id = mapping.dataset_of(key)
            raws = _raw_records(value, where) if dataset_id is not None else []
            counts: dict[str, int] = {}
            for number, raw in enumerate(raws):
                for path, values in _leaves(raw, f"{where} record {number}").items():
                    name = PATH_SEPARATOR.join(path)
                    counts[name] = counts.get(name, 0) + len(values)
            known = (
                {path for spec in mapping.datasets[dataset_id].fields.values() for path in spec.paths}
                if dataset_id is not None
                else set()
            )
            found.append(
                DatasetSurvey(
                    key=key,
                    dataset=dataset_id,
                    records=len(raws) if dataset_id is not None else _count_records(value),
                    paths=MappingProxyType(counts),
                    unmapped=tuple(sorted(name for name in counts if name not in known)),
                )
            )
    return tuple(found)

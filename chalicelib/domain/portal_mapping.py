"""The one mapping of the portal's names to ours: dataset names (and ``TM…`` codes), field paths
through groups and arrays, value types and the fields a record must have, per dataset.

[I] Every name in it is inferred (docs/mynaportal.md): the official item lists are given only to
approved API users. So the mapping is DATA (``chalicelib/mapping/portal-mapping.json``), replaceable
per deployment without code (``RELAY_PORTAL_MAPPING_FILE``), and validated here, at start-up, so
that a broken mapping is a clear error naming the problem, never a silently empty delivery.

A path is the group names from the record down to the value, joined with ``/``
(``所得情報/給与収入額``); an array of single-key objects is transparent (its elements are read as
one group), so a path never names an array index. A field may list several paths (alternative
layouts, first listed first); the parser reads whichever the record has.

This module is pure: ``parse_mapping`` takes the text; ``load_mapping`` reads a file once.
"""

from __future__ import annotations

import json
import re
from datetime import date
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.records import RECORD_MODELS

DEFAULT_MAPPING_FILE: Final = Path(__file__).resolve().parent.parent / "mapping" / "portal-mapping.json"
SETTING: Final = "RELAY_PORTAL_MAPPING_FILE"
MAX_MAPPING_BYTES: Final = 200_000

ValueType = Literal["text", "date", "year", "amount", "signed_amount", "count", "enum"]
# What each type converts to, used to check a field's type against the record model at load time.
_SAMPLES: Final[dict[str, tuple[Any, ...]]] = {
    "text": ("x",),
    "date": (date(2000, 1, 1),),
    "year": (2000,),
    "amount": (0, 1),
    "signed_amount": (-1, 0, 1),
    "count": (0, 1),
}

Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]
PATH_SEPARATOR: Final = "/"


class MappingError(ValueError):
    """The mapping cannot be used; the message names the setting, the file and the problem (never
    anything from a result)."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldSpec(_Strict):
    type: ValueType
    paths: tuple[Name, ...] = Field(min_length=1)
    values: dict[Name, Name] | None = None  # enum only: portal value -> ours

    @model_validator(mode="after")
    def _values_for_enum_only(self) -> FieldSpec:
        if (self.type == "enum") != (self.values is not None):
            raise ValueError("'values' is required for type enum and allowed for no other type")
        for path in self.paths:
            if any(not part.strip() for part in path.split(PATH_SEPARATOR)):
                raise ValueError(f"path {path!r} has an empty group name")
        if len(set(self.paths)) != len(self.paths):
            raise ValueError("a path is listed twice")
        return self

    @property
    def split_paths(self) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(path.split(PATH_SEPARATOR)) for path in self.paths)


class DatasetSpec(_Strict):
    names: tuple[Name, ...] = Field(min_length=1)
    code: Annotated[str, StringConstraints(pattern=r"^TM[0-9]{12}$")] | None = None
    required: tuple[str, ...] = ()
    fields: dict[str, FieldSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _required_are_fields(self) -> DatasetSpec:
        unknown = [name for name in self.required if name not in self.fields]
        if unknown:
            raise ValueError(f"required names fields the dataset does not map: {', '.join(unknown)}")
        owners: dict[str, str] = {}
        for name, spec in self.fields.items():
            for path in spec.paths:
                if path in owners:
                    raise ValueError(f"path {path!r} is mapped to both {owners[path]} and {name}")
                owners[path] = name
        return self


class PortalMapping(_Strict):
    version: Literal[1]
    comment: str | None = Field(default=None, alias="_comment")
    datasets: dict[DatasetId, DatasetSpec]
    _index: MappingProxyType[str, DatasetId] = PrivateAttr()

    @model_validator(mode="after")
    def _fits_the_records(self) -> PortalMapping:
        missing = sorted(set(RECORD_MODELS) - set(self.datasets))
        if missing:  # every dataset a partner may register a purpose for must be readable
            raise ValueError(f"no mapping for dataset {', '.join(missing)}")
        seen: dict[str, str] = {}
        for dataset_id, spec in self.datasets.items():
            for key in (*spec.names, *((spec.code,) if spec.code else ())):
                if key in seen:
                    raise ValueError(f"dataset name {key!r} is used by both {seen[key]} and {dataset_id}")
                seen[key] = dataset_id
            model = RECORD_MODELS[dataset_id]
            for name, field_spec in spec.fields.items():
                if name == "municipality" or name not in model.model_fields:
                    raise ValueError(f"{dataset_id}: {name!r} is not a field of its records")
                samples = (
                    tuple(field_spec.values.values())
                    if field_spec.type == "enum" and field_spec.values is not None
                    else _SAMPLES[field_spec.type]
                )
                for sample in samples:
                    try:
                        model.model_validate({"municipality": "x", name: sample})
                    except ValidationError:
                        raise ValueError(
                            f"{dataset_id}.{name}: type {field_spec.type!r} does not fit the field"
                            + (f" (value {sample!r})" if field_spec.type == "enum" else "")
                        ) from None
        return self

    def model_post_init(self, context: Any, /) -> None:
        index: dict[str, DatasetId] = {}
        for dataset_id, spec in self.datasets.items():
            for key in (*spec.names, *((spec.code,) if spec.code else ())):
                index[key] = dataset_id
        self._index = MappingProxyType(index)

    def dataset_of(self, key: str) -> DatasetId | None:
        """The dataset a portal key names: one of its names, its code, or its code followed by a
        separator and anything (``TM000000000002 地方税関係情報``)."""
        found = self._index.get(key)
        if found is None and _CODE_PREFIX.match(key):
            found = self._index.get(key[:14])
        return found


_CODE_PREFIX: Final = re.compile(r"TM[0-9]{12}[^0-9A-Za-z]", re.ASCII)


def parse_mapping(text: str, *, source: str = "the mapping") -> PortalMapping:
    """The mapping in ``text`` (JSON), validated; ``MappingError`` naming every problem."""
    try:
        document = json.loads(text)
    except ValueError:
        raise MappingError(f"{SETTING}: {source} is not JSON") from None
    try:
        return PortalMapping.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(document)'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise MappingError(f"{SETTING}: {source} is not a valid portal mapping: {problems}") from None


@lru_cache(maxsize=4)
def load_mapping(path: str | None = None) -> PortalMapping:
    """The mapping in the file ``path`` (default: the shipped one), read and validated once."""
    file = Path(path) if path else DEFAULT_MAPPING_FILE
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_MAPPING_BYTES + 1)
    except OSError as exc:
        raise MappingError(f"{SETTING}: cannot read {file} ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > MAX_MAPPING_BYTES:
        raise MappingError(f"{SETTING}: {file} is larger than {MAX_MAPPING_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MappingError(f"{SETTING}: {file} is not UTF-8") from None
    return parse_mapping(text, source=str(file))


def default_mapping() -> PortalMapping:
    return load_mapping(None)

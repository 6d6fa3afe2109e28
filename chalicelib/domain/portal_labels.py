"""The flat labels of the shipped portal mapping, as views: kept for readers that think in one
label per field (tests, the demo). The mapping itself, with its grouped paths, is
``chalicelib/mapping/portal-mapping.json`` (read by ``portal_mapping``); nothing here is a second
source of names.

[I] The whole mapping is inferred (docs/mynaportal.md, docs/portal-mapping.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, cast

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.portal_mapping import PATH_SEPARATOR, default_mapping
from chalicelib.domain.records import TaxationStatus

_MAPPING = default_mapping()

# dataset names (and codes), as the keys under each municipality.
DATASET_IDS: Final[Mapping[str, DatasetId]] = MappingProxyType(
    {name: dataset_id for dataset_id, spec in _MAPPING.datasets.items() for name in spec.names}
)
# flat field labels (paths of one name, outside any group) → record fields.
FIELD_NAMES: Final[Mapping[DatasetId, Mapping[str, str]]] = MappingProxyType(
    {
        dataset_id: MappingProxyType(
            {
                path: name
                for name, field_spec in spec.fields.items()
                for path in field_spec.paths
                if PATH_SEPARATOR not in path
            }
        )
        for dataset_id, spec in _MAPPING.datasets.items()
    }
)
# values of 課税区分.
TAXATION_STATUSES: Final[Mapping[str, TaxationStatus]] = MappingProxyType(
    # the mapping's validator admits only TaxationStatus values as this enum's targets
    cast(
        "dict[str, TaxationStatus]",
        dict(_MAPPING.datasets["local_tax"].fields["taxation_status"].values or {}),
    )
)

"""The relay's reader against the sandbox's plausible shapes (issue [15]): the two real-shapes
personas, written the way the research shows the portal writes (groups, arrays of single-key
objects, nulls, wareki, △, unicode escaping, two municipalities, a duplicate), read by the relay's
own mapping into exactly the records the persona documents. The sandbox's names and the relay's
mapping are independent copies: this is where they meet."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.normalise import normalise
from sandbox.portal import Portal
from tests.sandbox.test_real_shapes import INCOME, VACCINATION, raw_payload


def as_documented(record: Any) -> dict[str, Any]:
    """A relay record in the persona's terms: its fields by name, dates as ISO, absent left out."""
    fields = record.model_dump(mode="json", exclude_none=True)
    return {name: value for name, value in fields.items() if value != ""}


@pytest.mark.parametrize(("persona_id", "dataset"), [(INCOME, "local_tax"), (VACCINATION, "vaccination")])
def test_the_relay_reads_exactly_the_records_each_real_shapes_persona_documents(
    portal: Portal, persona_id: str, dataset: str
) -> None:
    persona = portal.personas[persona_id]
    expected = persona.relay_should_read
    assert expected is not None
    assert expected.dataset == dataset
    result = normalise(raw_payload(portal, persona_id, expected.inquiry), dataset=dataset)  # type: ignore[arg-type]
    read = [as_documented(record) for record in result.records]
    wanted = [dict(record) for record in expected.records]
    assert [{k: r.get(k) for k in w} for r, w in zip(read, wanted, strict=True)] == wanted
    assert result.dropped.get("duplicate_record") == 1  # the exact duplicate, folded and counted

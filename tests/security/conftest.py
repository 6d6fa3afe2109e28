"""The attack catalogue's fixtures and bookkeeping.

Fixtures: the functional relay (Chalice test client, moto in-process, the sandbox portal on
loopback over mutual TLS, a registered partner, the resident's journey), imported from
``tests/functional`` rather than copied, and a snapshot of the state and audit tables.

Bookkeeping: every test here is one attack case (or one case per parameter), marked
``@pytest.mark.attack(source=..., threat=...)``. The marks seen at collection are kept on the
config for ``test_catalogue.py``, which fails when there are fewer than 40 cases or when
``docs/security.md`` does not list exactly these cases. With ``MYNA_ATTACK_CATALOGUE_DUMP`` set,
the cases are also written to that file as JSON (how ``test_catalogue.py`` collects the whole
directory when only part of it was selected).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
import pytest

# before the import below, so that the helpers' assertions explain themselves when they fail
pytest.register_assert_rewrite("tests.security.helpers")

from tests.functional.conftest import clock, journey, partner, portal_env, sandbox  # noqa: E402
from tests.functional.test_authorization_refusals import other_partner  # noqa: E402
from tests.security.helpers import Tables  # noqa: E402

__all__ = ["clock", "journey", "other_partner", "partner", "portal_env", "sandbox", "tables"]

HERE = Path(__file__).resolve().parent
DUMP_VARIABLE = "MYNA_ATTACK_CATALOGUE_DUMP"


@dataclass
class Catalogue:
    """What collection found under tests/security: attack cases by node id, unmarked tests, files."""

    cases: dict[str, dict[str, str]] = field(default_factory=dict)
    unmarked: list[str] = field(default_factory=list)
    files: set[str] = field(default_factory=set)


CATALOGUE = pytest.StashKey[Catalogue]()


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselect anything
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    catalogue = Catalogue()
    for item in items:
        path = Path(str(item.path)).resolve()
        if HERE not in path.parents:
            continue
        catalogue.files.add(path.name)
        marker = item.get_closest_marker("attack")
        if marker is None:
            catalogue.unmarked.append(item.nodeid)
            continue
        catalogue.cases[item.nodeid] = {
            "source": str(marker.kwargs.get("source", "")),
            "threat": str(marker.kwargs.get("threat", "")),
        }
    config.stash[CATALOGUE] = catalogue
    dump = os.environ.get(DUMP_VARIABLE)
    if dump:
        Path(dump).write_text(
            json.dumps({"cases": catalogue.cases, "unmarked": catalogue.unmarked}), encoding="utf-8"
        )


@pytest.fixture
def tables(dynamodb_client: Any, resources: dict[str, str]) -> Callable[[], Tables]:
    """A snapshot of the state and audit tables, in a stable order."""

    def scan() -> Tables:
        snapshot: Tables = {}
        for name in ("RELAY_STATE_TABLE", "RELAY_AUDIT_TABLE"):
            items = dynamodb_client.scan(TableName=resources[name], ConsistentRead=True)["Items"]
            snapshot[name] = sorted(items, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))
        return snapshot

    return scan


@pytest.fixture(scope="session", autouse=True)
def _one_botocore_loader() -> Iterator[None]:
    """Every boto3 session of the run reads botocore's service models through one loader.

    Each test builds fresh sessions (the fixtures' and the container's), and each new session
    would parse the DynamoDB and KMS models again: most of a test's setup time. The loader only
    caches what it read from botocore's data files, so sharing it changes no behaviour."""
    loaders: dict[str | None, Any] = {}
    original = botocore.session.create_loader

    def shared(search_path_string: str | None = None) -> Any:
        if search_path_string not in loaders:
            loaders[search_path_string] = original(search_path_string)
        return loaders[search_path_string]

    botocore.session.create_loader = shared
    yield
    botocore.session.create_loader = original

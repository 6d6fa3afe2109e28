"""The packaged template of each deployable stage, built once per session by ``infra.package``
(the code behind ``make package``) into a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.deployment import DEPLOYED_STAGES
from infra.package import package


@pytest.fixture(scope="session")
def packaged_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        stage: package(stage, tmp_path_factory.mktemp(f"package-{stage}")).parent for stage in DEPLOYED_STAGES
    }


@pytest.fixture(scope="session")
def templates(packaged_dirs: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {
        stage: json.loads((path / "sam.json").read_text(encoding="utf-8"))
        for stage, path in packaged_dirs.items()
    }

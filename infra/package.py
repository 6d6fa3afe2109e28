"""``make package STAGE=dev|prod``: the deployable SAM template and Lambda zip for one stage.

1. writes ``build/<stage>/extras.json`` (``infra.template.extras``: tables, keys, log groups,
   throttling, concurrency, settings, alarms, outputs);
2. runs ``chalice package --stage <stage> --merge-template extras.json build/<stage>/``, which
   writes ``sam.json`` (Chalice's functions, roles with the policy files, API, schedules, merged
   with the extras) and ``deployment.zip`` (app.py, chalicelib/ and requirements.txt for Lambda);
3. checks what it produced: the zip holds only the app and its pinned requirements (no sandbox,
   no tests, no infra, no keys or certificates), and the template's policy files are the ones
   ``infra.policy`` generates.

Deploying it is the bank's step (docs/deploy.md): ``aws cloudformation package`` uploads the zip,
``aws cloudformation deploy`` creates the stack.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from infra.deployment import DEPLOYED_STAGES, FUNCTIONS
from infra.policy import policy_file, rendered
from infra.template import extras

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = REPO_ROOT / "build"
CACHE_DIR = REPO_ROOT / ".chalice" / "deployments"  # Chalice's own cache (git-ignored)
# What may sit at the top of the Lambda zip besides the requirements' own packages.
APP_ENTRIES = frozenset({"app.py", "chalicelib"})
FORBIDDEN_IN_ZIP = (
    "sandbox/",
    "tests/",
    "infra/",
    "scripts/",
    "local/",
    "bench/",
    "partner_kit/",
    "relayctl/",
)
FORBIDDEN_SUFFIXES = (".pem", ".key", ".crt", ".p12", ".env")  # in the app's own files
PRIVATE_KEY_BLOCK = re.compile(
    rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*[A-Za-z0-9+/=\s]{64,}-----END [A-Z ]*PRIVATE KEY-----"
)


class PackageError(RuntimeError):
    """The package was not produced, or it is not what may be deployed."""


def stage_dir(stage: str) -> Path:
    return BUILD_DIR / stage


def check_policy_files(stage: str) -> None:
    for function in FUNCTIONS:
        path = policy_file(stage, function)
        if not path.exists() or path.read_text(encoding="utf-8") != rendered(stage, function):
            raise PackageError(f"{path.name} differs from infra.policy: run `python -m infra.policy`")


def check_zip(path: Path) -> list[str]:
    """The zip's entries, refused if anything but the app and its requirements is in it."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        for name in names:
            own = name.split("/", 1)[0] in APP_ENTRIES
            if name.startswith(FORBIDDEN_IN_ZIP) or (own and name.lower().endswith(FORBIDDEN_SUFFIXES)):
                raise PackageError(f"deployment.zip must not contain {name}")
            if PRIVATE_KEY_BLOCK.search(archive.read(name)):
                raise PackageError(f"deployment.zip holds a private key in {name}")
    if not {name.split("/", 1)[0] for name in names} >= APP_ENTRIES:
        raise PackageError("deployment.zip lacks app.py or chalicelib/")
    return names


def _staged_source(target: Path) -> Path:
    """A copy of exactly what Chalice packages (app.py, chalicelib/, requirements.txt and the
    config with its policy files), without bytecode caches or anything else of the working tree.
    Chalice's cache of built dependencies (``.chalice/deployments``) is shared with the tree."""
    target.mkdir()
    shutil.copy2(REPO_ROOT / "app.py", target / "app.py")
    shutil.copy2(REPO_ROOT / "requirements.txt", target / "requirements.txt")
    shutil.copytree(
        REPO_ROOT / "chalicelib", target / "chalicelib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    (target / ".chalice").mkdir()
    for path in (REPO_ROOT / ".chalice").glob("*.json"):
        shutil.copy2(path, target / ".chalice" / path.name)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    (target / ".chalice" / "deployments").symlink_to(CACHE_DIR, target_is_directory=True)
    return target


def package(stage: str, out: Path | None = None) -> Path:
    """Build ``build/<stage>/`` (or ``out``) and return the template's path."""
    if stage not in DEPLOYED_STAGES:
        raise PackageError(f"STAGE must be one of {', '.join(DEPLOYED_STAGES)} (got {stage!r})")
    check_policy_files(stage)
    out = out or stage_dir(stage)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    merge = out / "extras.json"
    merge.write_text(json.dumps(extras(stage), indent=2) + "\n", encoding="utf-8")
    source = _staged_source(out / "source")
    chalice = Path(sys.executable).with_name("chalice")
    # Packaging imports app.py: a clean environment, with nothing of this machine's AWS setup.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "RELAY_")) and name not in {"PYTHONPATH"}
    }
    env["AWS_DEFAULT_REGION"] = "ap-northeast-1"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one packaging at a time may write Chalice's cache
        result = subprocess.run(
            [str(chalice), "package", "--stage", stage, "--merge-template", str(merge), str(out / "chalice")],
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if result.returncode != 0:
        raise PackageError(f"chalice package failed:\n{result.stdout}\n{result.stderr}")
    for produced in ("sam.json", "deployment.zip"):
        (out / "chalice" / produced).replace(out / produced)
    shutil.rmtree(out / "chalice")
    shutil.rmtree(source)
    check_zip(out / "deployment.zip")
    return out / "sam.json"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make package", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, help="dev or prod")
    args = parser.parse_args(argv)
    try:
        template = package(args.stage)
    except PackageError as error:
        print(f"package: {error}", file=sys.stderr)
        return 2
    print(f"template: {template.relative_to(REPO_ROOT)}")
    print(f"code:     {(template.parent / 'deployment.zip').relative_to(REPO_ROOT)}")
    print("next:     docs/deploy.md (aws cloudformation package + deploy)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`npm ci` for the test folders that pin npm packages (tests/interop, tests/a11y): once per
lockfile, under a file lock (two xdist workers may ask at once), the installed lockfile's digest kept
in node_modules so that an unchanged lockfile installs nothing."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import subprocess
from pathlib import Path

import pytest

NPM_CI_TIMEOUT_S = 180
STAMP = ".myna-relay-installed"  # in node_modules: the digest of the lockfile installed


def lockfile_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def npm_ci(folder: Path, npm: str, *, needs: Path | None = None) -> None:
    """`npm ci --ignore-scripts` in ``folder`` unless its lockfile is installed (and ``needs``, a
    file the caller reads, exists); a failed install fails the test with npm's output."""
    wanted = lockfile_digest(folder)
    stamp = folder / "node_modules" / STAMP
    with (folder / "package-lock.json").open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(OSError):
            if stamp.read_text(encoding="utf-8").strip() == wanted and (needs is None or needs.exists()):
                return
        done = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        stamp.write_text(wanted, encoding="utf-8")

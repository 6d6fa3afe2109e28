"""Leak scan: after the whole session, nothing the relay wrote may hold a resident's data or a secret.

A pytest plugin (registered by tests/conftest.py) that collects, for every test, what the relay
itself emitted, and fails the run if any of it leaks:

- **log records** of the relay: every record of the Powertools logger ``myna-relay`` as its own
  formatter renders it (appended keys, traceback), every EMF metric it writes, and every record that
  reaches the root logger (libraries the relay uses; the sandbox's, the demo partners' and werkzeug's
  are out of scope). For a launched stack: every JSON line of its output whose ``service`` is
  ``myna-relay`` (logs and EMF metrics of ``chalice local`` and of the scheduler). The rest of that
  output (the banner, the sandbox, the demo partners, ``chalice local``'s access log, which stands in
  for API Gateway's and prints the full query) is not the relay's logging;
- **error bodies**: every answer with status >= 400, headers included, that a relay app gave through
  Chalice's ``LocalGateway`` (the test client in-process, ``chalice local`` in a launched stack); the
  gateway's own emulated API Gateway errors (no such route) are not the relay's;
- **DynamoDB items**: in-process (``mock_aws`` or a moto server in this process), every version of
  every item as moto writes it (``PutItem``, ``UpdateItem``, transactions, batches: a value
  overwritten later was stored still), and every table's content when moto resets it and at each
  test's teardown; for a launched stack, every table scanned through its moto endpoint just before
  the launcher stops it.

What counts as a leak (``Scanner``), in the text and in what its base64 runs decode to (an
"encrypted" value that is only base64, a JWS payload):

- a **persona value** from ``sandbox/personas/``: each resident's name (with and without the space),
  municipality and record value. Values shorter than 4 characters (課税, 1回目, BCG), numbers of fewer
  than 6 digits, and round amounts (at most two significant digits: 330000, 5000000) are too generic
  to mean anything and are ignored. Text is matched raw, JSON-escaped (\\uXXXX) and percent-encoded;
  numbers as whole numbers only (digit groups joined by the separators the Individual Number guard
  knows, so 2019-08-12 is 20190812 and 5,000,000 is 5000000, never digits inside a longer number or an
  identifier, nor the fraction of a second of a timestamp). One documented exception: an audit record
  names its providing municipalities (``municipalities``: the provider of 情報提供等記録,
  docs/data-model.md), and nothing else there;
- a **valid Individual Number**: a stand-alone number of exactly 12 digits (digits with single
  separators, as the guard reads them) whose check digit is right
  (``chalicelib.domain.individual_number``). Longer digit runs (telegram ids, timestamps) are not
  numbers of 12 digits; the relay's guard is deliberately more conservative than this scan;
- a **token**: any 256-bit secret that the relay (request_uri, CSRF, portal state, code, access
  token) or the sandbox portal (codes, access tokens) generated with ``secrets.token_urlsafe``,
  recorded as it is made (in this process, and in a launched stack's processes through a
  ``sitecustomize`` the launcher puts on their path). The relay stores only their SHA-256;
- a **private key**: a PEM ``PRIVATE KEY`` block, a JWK with a ``d`` member, a line of the sandbox's
  mTLS keys (recorded as the sandbox writes them), a demo partner's private ``d``.

KMS ciphertexts, HMAC pseudonyms and fingerprints are random and match none of these.

Findings never show a value in full. Any finding, or any failure of the scanner itself, makes the
run fail; the report is written to test-artifacts/leakscan.json (``MYNA_LEAKSCAN_REPORT`` overrides
the path) and a one-line summary (what was scanned, and the seconds the scan cost) is printed
either way.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPORT = REPO_ROOT / "test-artifacts" / "leakscan.json"
REPORT_ENV = "MYNA_LEAKSCAN_REPORT"
RECORD_DIR_ENV = "MYNA_LEAKSCAN_DIR"
RELAY_SERVICE = "myna-relay"

MIN_TEXT_LENGTH = 4  # shorter persona values (課税, 1回目, BCG) are vocabulary, not data
MIN_NAME_LENGTH = 3  # a full name is distinctive even when short (加藤愛)
MIN_NUMBER_DIGITS = 6  # 5-digit amounts collide with ports, sizes and counters
MIN_SECRET_BYTES = 32  # token_urlsafe(32): codes, tokens, request_uri, CSRF, portal state
TOKEN_ORIGINS = {"chalicelib": "relay secret", "sandbox": "portal secret"}
# Loggers that are not the relay's: the sandbox portal, the demo partners, the HTTP servers that run them.
OUT_OF_SCOPE_LOGGERS = ("werkzeug", "sandbox", "partner_kit", "playwright", "asyncio")

# The separators the Individual Number guard accepts between two digits (after NFKC).
_SEPARATORS = " \t\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc,."
NUMBER = re.compile(rf"\d+(?:[{_SEPARATORS}]\d+)*")
WORD_CHAR = re.compile(r"[0-9A-Za-z]")
SECRET_CANDIDATE = re.compile(r"[A-Za-z0-9_\-]{20,}")
PEM_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
JWK_PRIVATE_MEMBER = re.compile(r'\\*"d\\*"\s*:\s*\\*"[A-Za-z0-9_\-]{20,}')
ROUND_AMOUNT = re.compile(r"^[1-9]\d?0{4,}$")
# The fraction of a second of a time of day (23.118300 in 15:51:23.118300+00:00): a clock reading, not
# a number anyone wrote; one in a million timestamps would otherwise read as a 6-digit persona amount.
TIME_FRACTION = re.compile(r"(?<=[0-9]{2}:[0-9]{2}:[0-9]{2})[.,][0-9]{1,9}")
WINDOW_LIMIT = 256  # a secret glued to other URL-safe characters is looked for in runs up to this long
BASE64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")  # 12 bytes: an Individual Number
BASE64_DEPTH = 2  # base64 inside base64 (a JWS payload in a stored document) is read too


# -- what is a leak -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    kind: str  # "persona value" | "individual number" | "token" | "private key"
    what: str  # which value class, never the value
    masked: str


def mask(value: str, keep: int = 2) -> str:
    return f"{value[:keep]}…({len(value)} chars)"


def _normalise(text: str) -> str:
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def _bounded(text: str, start: int, end: int) -> bool:
    """Not glued to a letter or digit on either side, directly or through ``-`` or ``_``: so not part
    of an identifier (a UUID such as 00000000-0000-4a00-…, TL-…-…) or of a longer number."""
    before = text[max(start - 2, 0) : start]
    after = text[end : end + 2]
    if (before and WORD_CHAR.match(before[-1])) or (after and WORD_CHAR.match(after[0])):
        return False
    glued_before = len(before) == 2 and before[1] in "-_" and WORD_CHAR.match(before[0]) is not None
    glued_after = len(after) == 2 and after[0] in "-_" and WORD_CHAR.match(after[1]) is not None
    return not (glued_before or glued_after)


@dataclass
class PersonaValues:
    """The distinctive values of the sandbox's personas: text needles (with their spellings) and
    whole numbers, each mapped to where it comes from (``salaried: local_tax 給与収入額``)."""

    texts: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, str] = field(default_factory=dict)

    def add_text(self, value: str, label: str, *, minimum: int = MIN_TEXT_LENGTH) -> None:
        value = unicodedata.normalize("NFKC", value).strip()
        if len(value) < minimum:
            return
        digits = re.sub(rf"[{_SEPARATORS}]", "", value)
        if digits.isdigit():
            self.add_number(digits, label)
            return
        spellings = {value, value.replace(" ", "")}
        for spelling in list(spellings):
            if len(spelling) < minimum:
                spellings.discard(spelling)
            elif not spelling.isascii():
                spellings |= {
                    json.dumps(spelling)[1:-1],  # \uXXXX, as json.dumps writes by default
                    quote(spelling, safe=""),
                    quote_plus(spelling, safe=""),
                }
        for spelling in spellings:
            self.texts.setdefault(spelling, label)

    def add_number(self, digits: str, label: str) -> None:
        if len(digits) >= MIN_NUMBER_DIGITS and not ROUND_AMOUNT.match(digits):
            self.numbers.setdefault(digits, label)


def load_persona_values(directory: Path | None = None, only: Iterable[str] | None = None) -> PersonaValues:
    """Every persona's values, or only those of the personas named in ``only``."""
    from sandbox.personas import PERSONAS_DIR, load_personas

    values = PersonaValues()
    wanted = None if only is None else set(only)
    for persona in load_personas(directory or PERSONAS_DIR).values():
        if wanted is not None and persona.id not in wanted:
            continue
        name = persona.display_name.split("（")[0].split("(")[0].strip()
        values.add_text(name, f"{persona.id}: name", minimum=MIN_NAME_LENGTH)
        for dataset, records in (("local_tax", persona.local_tax), ("vaccination", persona.vaccination)):
            for record in records:
                values.add_text(record.municipality, f"{persona.id}: {dataset} municipality")
                for label, value in record.fields.items():
                    values.add_text(value, f"{persona.id}: {dataset} {label}")
    return values


def demo_partner_private_members(directory: Path = REPO_ROOT / "local" / "partners") -> dict[str, str]:
    members: dict[str, str] = {}
    for path in sorted(directory.glob("*.DEMO-ONLY-private-jwks.json")):
        for key in json.loads(path.read_text(encoding="utf-8")).get("keys", []):
            if isinstance(key.get("d"), str):
                members[key["d"]] = f"demo partner private JWK ({key.get('kid', path.name)})"
    return members


def pem_key_lines(pem: str | bytes) -> list[str]:
    """The base64 lines of a PEM private key's body (long enough to be unique)."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    return [line.strip() for line in text.splitlines() if len(line.strip()) >= 40 and "-----" not in line]


def base64_decoded(text: str) -> str:
    """What the base64 and base64url runs of ``text`` decode to (as UTF-8, errors replaced), joined.
    Random bytes (ciphertexts, hashes, identifiers read as base64) decode to noise that matches nothing."""
    parts = []
    for match in BASE64_RUN.finditer(text):
        run = match.group().rstrip("=")
        urlsafe, standard = ("-" in run or "_" in run), ("+" in run or "/" in run)
        if (urlsafe and standard) or len(run) % 4 == 1:
            continue
        try:
            raw = base64.b64decode(run + "=" * (-len(run) % 4), altchars=b"-_" if urlsafe else None)
        except (binascii.Error, ValueError):
            continue
        parts.append(raw.decode("utf-8", errors="replace"))
    return "\n\x00\n".join(parts)


class Scanner:
    """Finds leaks in text. ``secrets`` maps a recorded secret to its class; ``key_lines`` are lines
    of private keys that belong to the material being scanned."""

    def __init__(self, personas: PersonaValues, secrets_: Mapping[str, str] | None = None) -> None:
        from chalicelib.domain.individual_number import is_individual_number

        self._is_individual_number = is_individual_number
        self.personas = personas
        self.secrets: dict[str, str] = dict(secrets_ or {})
        self._secret_lengths: set[int] = {len(s) for s in self.secrets}
        self._ascii_texts = [(n, label) for n, label in personas.texts.items() if n.isascii()]
        self._other_texts = [(n, label) for n, label in personas.texts.items() if not n.isascii()]

    def add_secret(self, value: str, what: str) -> None:
        self.secrets.setdefault(value, what)
        self._secret_lengths.add(len(value))

    def scan(self, text: str, key_lines: Iterable[str] = (), *, depth: int = 0) -> list[Hit]:
        """Every hit in ``text``, and in what its base64 runs decode to (a value stored base64-encoded
        is still stored: an unencrypted "ciphertext", a JWS payload)."""
        key_lines = tuple(key_lines)
        text = _normalise(text)
        hits: list[Hit] = []
        hits += self._persona_texts(text)
        hits += self._numbers(text)
        hits += self._secrets(text)
        hits += self._private_keys(text, key_lines)
        if depth < BASE64_DEPTH:
            decoded = base64_decoded(text)
            if decoded:
                inner = self.scan(decoded, key_lines, depth=depth + 1)
                hits += [
                    Hit(h.kind, f"{h.what} (base64-encoded)" if depth == 0 else h.what, h.masked)
                    for h in inner
                ]
        return hits

    def _persona_texts(self, text: str) -> list[Hit]:
        hits = []
        candidates = self._ascii_texts if text.isascii() else self._ascii_texts + self._other_texts
        escaped, encoded = "\\u" in text, "%" in text
        for needle, label in candidates:
            if (needle[0] == "\\" and not escaped) or (needle[0] == "%" and not encoded):
                continue
            if needle not in text:
                continue
            if needle.isascii() and needle.isalnum() and not self._bounded_anywhere(text, needle):
                continue  # a lot number inside an identifier or a base64 blob is not the lot number
            hits.append(Hit("persona value", label, mask(needle, 1)))
        return hits

    @staticmethod
    def _bounded_anywhere(text: str, needle: str) -> bool:
        return any(_bounded(text, m.start(), m.end()) for m in re.finditer(re.escape(needle), text))

    def _numbers(self, text: str) -> list[Hit]:
        hits = []
        text = TIME_FRACTION.sub("", text)
        for match in NUMBER.finditer(text):
            if not _bounded(text, match.start(), match.end()):
                continue
            groups = re.split(rf"[{_SEPARATORS}]", match.group())
            digits = "".join(groups)
            if len(digits) == 12 and self._is_individual_number(digits):
                hits.append(Hit("individual number", "valid check digit", f"{digits[:2]}{'*' * 10}"))
            for candidate in {digits, *groups}:
                label = self.personas.numbers.get(candidate)
                if label is not None:
                    hits.append(Hit("persona value", label, mask(candidate)))
        return hits

    def _secrets(self, text: str) -> list[Hit]:
        if not self.secrets:
            return []
        hits = []
        for match in SECRET_CANDIDATE.finditer(text):
            run = match.group()
            found = {run} if run in self.secrets else set()
            if not found and len(run) <= WINDOW_LIMIT:
                for length in tuple(self._secret_lengths):  # the sandbox's threads may add one
                    found |= {run[i : i + length] for i in range(len(run) - length + 1)} & self.secrets.keys()
            for value in found:
                what = self.secrets[value]
                kind = "private key" if "private" in what else "token"
                hits.append(Hit(kind, what, mask(value, 4)))
        return hits

    def _private_keys(self, text: str, key_lines: Iterable[str]) -> list[Hit]:
        hits = [
            Hit("private key", "PEM private key block", m.group()) for m in PEM_PRIVATE_KEY.finditer(text)
        ]
        hits += [
            Hit("private key", "JWK with a private 'd' member", '"d": …')
            for _ in JWK_PRIVATE_MEMBER.finditer(text)
        ]
        hits += [
            Hit("private key", "line of the sandbox's TLS keys", mask(line, 4))
            for line in key_lines
            if line in text
        ]
        return hits


# -- what is collected -------------------------------------------------------------------------------


@dataclass
class Material:
    """What one test (or the session, outside tests) made the relay emit."""

    owner: str
    entries: list[tuple[str, str, str]] = field(default_factory=list)  # (source, where, text)
    # Persona values a documented field may hold: (source, where, text, the persona labels it may hold).
    documented: list[tuple[str, str, str, str]] = field(default_factory=list)
    key_lines: set[str] = field(default_factory=set)

    def add(self, source: str, where: str, text: str) -> None:
        self.entries.append((source, where, text))


@dataclass(frozen=True)
class Finding:
    kind: str
    what: str
    masked: str
    source: str  # "log" | "error body" | "table"
    where: str
    test: str


@dataclass
class LeakScan:
    """The session's collector and its findings."""

    scanner: Scanner
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "log records",
                "error bodies",
                "table items",
                "table scans",
                "launched stacks",
                "documented provider municipalities",
            ),
            0,
        )
    )
    tables: set[str] = field(default_factory=set)
    session: Material = field(default_factory=lambda: Material("(outside any test)"))
    current: Material | None = None
    seconds: float = 0.0  # spent collecting and scanning: what the scan costs the suite
    _seen_items: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started

    @property
    def material(self) -> Material:
        return self.current or self.session

    def add(self, source: str, where: str, text: str) -> None:
        counter = {"log": "log records", "error body": "error bodies"}.get(source)
        with self._lock:
            if counter:
                self.counts[counter] += 1
            self.material.add(source, where, text)

    def add_item(self, table: str, item: Mapping[str, Any]) -> None:
        """One DynamoDB item (typed JSON); an item already scanned unchanged is not scanned twice."""
        text, providers = item_text(item)
        where = f"table {table} ({item_label(item)})"
        with self._lock:
            self.counts["table items"] += 1
            fingerprint = hash((table, text, tuple(providers)))
            if fingerprint in self._seen_items:
                return
            self._seen_items.add(fingerprint)
            self.material.add("table", where, text)
            if providers:
                self.counts["documented provider municipalities"] += len(providers)
                self.material.documented.append(
                    (
                        "table",
                        f"{where} municipalities",
                        json.dumps(providers, ensure_ascii=False),
                        " municipality",
                    )
                )

    def scanned_table(self, name: str) -> None:
        with self._lock:
            self.counts["table scans"] += 1
            self.tables.add(name)

    def flush(self, material: Material) -> None:
        """Scan what was collected; attribute each hit to the entry it is in."""
        with self.timed():
            self._flush(material)

    def _flush(self, material: Material) -> None:
        with self._lock:
            entries, key_lines = list(material.entries), set(material.key_lines)
            documented = list(material.documented)
            material.entries.clear()
            material.documented.clear()
            material.key_lines.clear()
        for source, where, text, allowed in documented:
            hits = self.scanner.scan(text, key_lines)
            self._found(material, source, where, [h for h in hits if not h.what.endswith(allowed)])
        joined = "\n\x00\n".join(text for _, _, text in entries)
        if not entries or not self.scanner.scan(joined, key_lines):
            return
        for source, where, text in entries:
            self._found(material, source, where, self.scanner.scan(text, key_lines))

    def _found(self, material: Material, source: str, where: str, hits: list[Hit]) -> None:
        for hit in hits:
            finding = Finding(hit.kind, hit.what, hit.masked, source, where, material.owner)
            if finding not in self.findings:
                self.findings.append(finding)

    def report(self) -> dict[str, Any]:
        return {
            "clean": not self.findings and not self.errors,
            "scanned": {
                **self.counts,
                "distinct tables": len(self.tables),
                "secrets looked for": len(self.scanner.secrets),
            },
            "seconds": round(self.seconds, 2),
            "findings": [finding.__dict__ for finding in self.findings],
            "scanner_errors": list(self.errors),
        }

    def summary(self) -> str:
        c = self.counts
        return (
            f"{c['log records']} log records, {c['error bodies']} error bodies, {c['table items']} table items "
            f"({c['table scans']} scans of {len(self.tables)} tables), {c['launched stacks']} launched stacks; "
            f"{len(self.scanner.secrets)} secrets looked for; {self.seconds:.1f} s"
        )


def item_text(item: Mapping[str, Any]) -> tuple[str, list[str]]:
    """A DynamoDB item (typed JSON) as the text the scan reads, and its documented providers apart."""
    plain = plain_attribute_values(item)
    providers = documented_providers(plain)
    return json.dumps(plain, ensure_ascii=False, sort_keys=True, default=str), providers


def item_hits(scanner: Scanner, item: Mapping[str, Any]) -> list[Hit]:
    """What the session's scan finds in one item, at once: for a test that checks the tables it used."""
    text, providers = item_text(item)
    documented = scanner.scan(json.dumps(providers, ensure_ascii=False)) if providers else []
    return scanner.scan(text) + [hit for hit in documented if not hit.what.endswith(" municipality")]


def plain_attribute_values(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _plain(value) for name, value in item.items()}


def _plain(value: Mapping[str, Any]) -> Any:
    """A DynamoDB typed value ({"S": ...}) as plain JSON; binary is decoded so plaintext shows."""
    kind, inner = next(iter(value.items()))
    if kind == "M":
        return {k: _plain(v) for k, v in inner.items()}
    if kind == "L":
        return [_plain(v) for v in inner]
    if kind in ("B", "BS"):
        blobs = inner if kind == "BS" else [inner]
        decoded = []
        for blob in blobs:
            raw = blob if isinstance(blob, bytes) else base64.b64decode(blob)
            decoded.append(raw.decode("utf-8", errors="replace"))
        return decoded if kind == "BS" else decoded[0]
    return inner


def documented_providers(plain: dict[str, Any]) -> list[str]:
    """Takes the providing municipalities out of an audit record (``municipalities``: the provider of
    情報提供等記録, docs/data-model.md, docs/partner-audit.md), to be scanned on their own: they may
    name a municipality, and nothing else."""
    document = plain.get("document")
    if not isinstance(document, str) or not document.startswith("{"):
        return []
    try:
        record = json.loads(document)
    except ValueError:
        return []
    if not isinstance(record, dict) or not {"event", "requester_id", "municipalities"} <= record.keys():
        return []
    providers = record.pop("municipalities")
    plain["document"] = json.dumps(record, ensure_ascii=False)
    return [str(p) for p in providers] if isinstance(providers, list) else [str(providers)]


def item_label(item: Mapping[str, Any]) -> str:
    """The item's partition key up to its first '#': the kind of item, never an identifier."""
    for name in ("pk", "PK", "id"):
        value = item.get(name, {})
        if isinstance(value, Mapping) and isinstance(value.get("S"), str):
            return f"{name}={value['S'].split('#')[0]}#…"
    return "item"


_active: LeakScan | None = None


def active() -> LeakScan | None:
    return _active


def _add(source: str, where: str, text: str) -> None:
    if _active is not None:
        _active.add(source, where, text)


# -- collectors in this process ---------------------------------------------------------------------


class RelayLogHandler(logging.Handler):
    """Renders each record with the relay logger's own formatter (appended keys, traceback)."""

    def __init__(self, formatter: logging.Formatter | None) -> None:
        super().__init__(logging.NOTSET)
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception as exc:  # noqa: BLE001  # a record we cannot render is a scanner failure, named
            if _active is not None:
                _active.errors.append(f"could not render a log record of {record.name}: {type(exc).__name__}")
            text = f"{record.msg!r} {record.args!r}"
        _add("log", f"log {record.name} {record.levelname} at {record.funcName}:{record.lineno}", text)


class RootLogHandler(RelayLogHandler):
    def __init__(self) -> None:
        super().__init__(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith((RELAY_SERVICE, *OUT_OF_SCOPE_LOGGERS)):
            return
        super().emit(record)


def response_text(response: Mapping[str, Any]) -> str:
    body = response.get("body") or ""
    if response.get("isBase64Encoded") and body:
        body = base64.b64decode(body).decode("utf-8", errors="replace")
    headers = {**(response.get("headers") or {}), **(response.get("multiValueHeaders") or {})}
    return json.dumps(headers, ensure_ascii=False, default=str) + "\n" + str(body)


def recording_gateway(
    original: Callable[..., Any], sink: Callable[[str, str, int, str], None]
) -> Callable[..., Any]:
    """Wraps ``LocalGateway.handle_request``: every answer of the app with status >= 400 goes to ``sink``."""

    @functools.wraps(original)
    def handle_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        response = original(self, *args, **kwargs)
        call = dict(zip(("method", "path", "headers", "body"), args, strict=False)) | kwargs
        status = int(response.get("statusCode", 0)) if isinstance(response, Mapping) else 0
        if status >= 400:
            path = str(call.get("path", "?")).split("?")[0]  # the query can carry codes: never in a report
            sink(str(call.get("method", "?")), path, status, response_text(response))
        return response

    return handle_request


def recording_token_urlsafe(
    original: Callable[..., str], sink: Callable[[str, str], None]
) -> Callable[..., str]:
    """Wraps ``secrets.token_urlsafe``: 256-bit secrets made by the relay or the sandbox go to ``sink``."""

    @functools.wraps(original)
    def token_urlsafe(nbytes: int | None = None) -> str:
        value = original(nbytes)
        if nbytes is None or nbytes >= MIN_SECRET_BYTES:
            origin = str(sys._getframe(1).f_globals.get("__name__", "")).partition(".")[0]
            if origin in TOKEN_ORIGINS:
                sink(value, TOKEN_ORIGINS[origin])
        return value

    return token_urlsafe


def snapshot_moto_tables(scan: LeakScan) -> None:
    """Every item of every table in moto's in-process DynamoDB backend (mock_aws and in-process servers)."""
    models = sys.modules.get("moto.dynamodb.models")
    if models is None:
        return
    with scan.timed():
        _snapshot(scan, models.dynamodb_backends)


def _snapshot(scan: LeakScan, dynamodb_backends: Any) -> None:
    for per_account in list(dynamodb_backends.values()):
        for backend in list(per_account.values()):
            for name, table in list(backend.tables.items()):
                scan.scanned_table(name)
                for item in table.all_items():
                    scan.add_item(name, item.to_json()["Attributes"])


class _Patches:
    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def set(self, owner: Any, name: str, value: Any) -> None:
        original = owner.__dict__[name]
        setattr(owner, name, value)
        self._undo.append(lambda: setattr(owner, name, original))

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


def install(scan: LeakScan) -> _Patches:
    """Hooks this process: the relay's loggers, the gateway, secret and key generation, moto resets."""
    import chalice.local
    import moto.core.base_backend
    import moto.dynamodb.models
    from moto.dynamodb.models.table import Table

    import chalicelib.telemetry
    import sandbox.tls
    from chalicelib.telemetry import logger as relay_logger

    patches = _Patches()
    relay_handler = RelayLogHandler(relay_logger.registered_formatter)
    root_handler = RootLogHandler()
    logging.getLogger(RELAY_SERVICE).addHandler(relay_handler)
    logging.getLogger().addHandler(root_handler)
    patches._undo.append(lambda: logging.getLogger(RELAY_SERVICE).removeHandler(relay_handler))
    patches._undo.append(lambda: logging.getLogger().removeHandler(root_handler))

    def body_sink(method: str, path: str, status: int, text: str) -> None:
        scan.add("error body", f"error body {method} {path} {status}", text)

    gateway = chalice.local.LocalGateway
    patches.set(gateway, "handle_request", recording_gateway(gateway.handle_request, body_sink))
    patches.set(
        secrets, "token_urlsafe", recording_token_urlsafe(secrets.token_urlsafe, scan.scanner.add_secret)
    )

    original_write_key = sandbox.tls._write_key

    def write_key(path: Path, key: Any) -> None:
        original_write_key(path, key)
        with contextlib.suppress(OSError):
            scan.material.key_lines.update(pem_key_lines(Path(path).read_bytes()))

    patches.set(sandbox.tls, "_write_key", write_key)

    backend_dict = moto.core.base_backend.BackendDict
    original_reset = backend_dict.__dict__["reset"].__func__

    def reset(cls: Any) -> None:
        snapshot_moto_tables(scan)  # mock_aws resets on start and stop: this is the state it drops
        original_reset(cls)

    patches.set(backend_dict, "reset", classmethod(reset))

    # Every version of every item as it is written: a leak overwritten or deleted later is a leak still.
    def written(table: str, item: Any) -> None:
        if item is not None:
            with scan.timed():
                scan.add_item(table, item.to_json()["Attributes"])

    original_put = Table.put_item

    @functools.wraps(original_put)
    def put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = original_put(self, *args, **kwargs)
        written(self.name, item)
        return item

    backend = moto.dynamodb.models.DynamoDBBackend
    original_update = backend.update_item

    @functools.wraps(original_update)
    def update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        item = original_update(self, table_name, *args, **kwargs)
        written(table_name, item)
        return item

    patches.set(Table, "put_item", put_item)
    patches.set(backend, "update_item", update_item)
    patches.set(
        chalicelib.telemetry, "single_metric", recording_single_metric(chalicelib.telemetry.single_metric)
    )
    return patches


def recording_single_metric(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps Powertools' ``single_metric`` as the relay calls it: each EMF line (printed, not logged)
    is collected with the log records: its names, dimensions and metadata."""

    @contextlib.contextmanager
    @functools.wraps(original)
    def single_metric(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with original(*args, **kwargs) as metric:
            yield metric
            sets = {
                "metrics": metric.metric_set,
                "dimensions": metric.dimension_set,
                "metadata": metric.metadata_set,
            }
            _add("log", "metric (EMF line)", json.dumps(sets, ensure_ascii=False, default=str))

    return single_metric


def moto_mock_active() -> bool:
    models = sys.modules.get("moto.core.models")
    return bool(models and getattr(models.MockAWS, "_nested_count", 0))


# -- launched stacks (tests/integration/stack.py) -----------------------------------------------------

# One directory per checkout, shared by concurrent sessions and rewritten atomically: nothing to clean up.
SITE_DIR = (
    Path(tempfile.gettempdir())
    / f"myna-leakscan-site-{hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:12]}"
)

SITECUSTOMIZE = """\
# Written by tests/leakscan.py for a launched stack: record what the leak scan needs in this process.
import os, sys
sys.path.append({repo!r})
try:
    from tests.leakscan import install_child_recorder
    install_child_recorder(os.environ[{env!r}])
except Exception as exc:  # the parent fails the run when no relay process reported in
    print(f"leakscan: recorder not installed: {{exc!r}}", file=sys.stderr)
"""


def child_environment(record_dir: Path) -> dict[str, str]:
    """Environment for a launched stack: a ``sitecustomize`` that records into ``record_dir``."""
    SITE_DIR.mkdir(exist_ok=True)
    content = SITECUSTOMIZE.format(repo=str(REPO_ROOT), env=RECORD_DIR_ENV)
    target = SITE_DIR / "sitecustomize.py"
    if not target.exists() or target.read_text(encoding="utf-8") != content:
        fd, temporary = tempfile.mkstemp(dir=SITE_DIR, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.replace(temporary, target)
    record_dir.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(SITE_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, RECORD_DIR_ENV: str(record_dir)}


def install_child_recorder(record_dir: str) -> None:
    """In a launched stack's process: record generated secrets and the gateway's error answers."""
    directory = Path(record_dir)
    lock = threading.Lock()

    def append(name: str, line: str) -> None:
        with lock, (directory / name).open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def secret_sink(value: str, what: str) -> None:
        append("secrets.tsv", f"{what}\t{value}")

    def body_sink(method: str, path: str, status: int, text: str) -> None:
        append("bodies.jsonl", json.dumps({"where": f"{method} {path} {status}", "text": text}))

    secrets.token_urlsafe = recording_token_urlsafe(secrets.token_urlsafe, secret_sink)  # type: ignore[assignment]
    import chalice.local

    gateway = chalice.local.LocalGateway
    gateway.handle_request = recording_gateway(gateway.handle_request, body_sink)  # type: ignore[method-assign]
    # The interpreter's own command line: `python -m scripts.chalice_local local ...` has only `-m` as
    # sys.argv[0] while the module is being found.
    append("processes.txt", f"{os.getpid()}\t{' '.join(getattr(sys, 'orig_argv', []) or sys.argv or [])}")


def collect_launched_tables(endpoint: str, region: str) -> None:
    """Every item of every table of a launched stack, through its moto endpoint."""
    scan = _active
    if scan is None:
        return
    import boto3

    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        names = [n for page in client.get_paginator("list_tables").paginate() for n in page["TableNames"]]
        for name in names:
            scan.scanned_table(name)
            for page in client.get_paginator("scan").paginate(TableName=name):
                for item in page["Items"]:
                    scan.add_item(name, item)
    except Exception as exc:  # noqa: BLE001  # named in the report: a stack whose tables were not read
        scan.errors.append(
            f"could not scan the launched stack's tables at {endpoint}: {type(exc).__name__}: {exc}"
        )


def collect_launched_output(output: str, record_dir: Path, tls_dir: Path | None = None) -> None:
    """A stopped stack's relay log lines, error bodies and generated secrets; its TLS key lines."""
    scan = _active
    try:
        if scan is None:
            return
        scan.counts["launched stacks"] += 1
        for line in output.splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("service") == RELAY_SERVICE:
                where = f"launched stack log {record.get('level', 'metric')} at {record.get('location', '-')}"
                scan.add("log", where, line)
        processes = _read_lines(record_dir / "processes.txt")
        if not any("chalice" in line and " local" in line for line in processes):
            scan.errors.append(
                f"the leak recorder did not run in the launched stack's chalice local (processes: {processes})"
            )
        for line in _read_lines(record_dir / "secrets.tsv"):
            what, _, value = line.partition("\t")
            scan.scanner.add_secret(value, what)
        for line in _read_lines(record_dir / "bodies.jsonl"):
            body = json.loads(line)
            scan.add("error body", f"launched stack error body {body['where']}", body["text"])
        if tls_dir is not None:
            for key in sorted(tls_dir.glob("*.key")):
                scan.material.key_lines.update(pem_key_lines(key.read_bytes()))
    finally:
        shutil.rmtree(record_dir, ignore_errors=True)


def _read_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    except FileNotFoundError:
        return []


# -- the plugin ------------------------------------------------------------------------------------------

_patches: _Patches | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _active, _patches
    if _active is not None:  # registered twice (a nested session): keep the first
        return
    scanner = Scanner(load_persona_values(), demo_partner_private_members())
    _active = LeakScan(scanner)
    _patches = install(_active)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _active, _patches
    if _patches is not None:
        _patches.undo()
    _active, _patches = None, None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    scan = _active
    if scan is None:
        return (yield)
    scan.current = Material(item.nodeid)
    try:
        return (yield)
    finally:
        material, scan.current = scan.current, None
        scan.flush(material)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # Before the fixtures are torn down: an in-process moto server keeps its tables (mock_aws's are
    # read when it resets them).
    if _active is not None and not moto_mock_active():
        snapshot_moto_tables(_active)
    return (yield)


def report_path() -> Path:
    return Path(os.environ.get(REPORT_ENV) or DEFAULT_REPORT)


# Under pytest-xdist every worker scans what its own tests did and hands its report to the
# controller, which merges them: the verdict and the file are the whole run's.
_worker_reports: list[dict[str, Any]] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    report = getattr(node, "workeroutput", {}).get("leakscan")
    if report is not None:
        _worker_reports.append(report)


def merged(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report for the run from the controller's and the workers' reports."""
    scanned: dict[str, int] = {}
    for report in reports:
        for name, count in report["scanned"].items():
            if name in ("distinct tables", "secrets looked for"):
                scanned[name] = max(scanned.get(name, 0), count)
            else:
                scanned[name] = scanned.get(name, 0) + count
    return {
        "clean": all(report["clean"] for report in reports),
        "scanned": scanned,
        "seconds": round(sum(report["seconds"] for report in reports), 2),
        "findings": [finding for report in reports for finding in report["findings"]],
        "scanner_errors": [error for report in reports for error in report["scanner_errors"]],
        "workers": len(reports) - 1,
    }


def _run_report(session: pytest.Session) -> dict[str, Any] | None:
    scan = _active
    if scan is None:
        return None
    if not moto_mock_active():
        snapshot_moto_tables(scan)
    scan.flush(scan.session)
    report = scan.report()
    if hasattr(session.config, "workerinput"):  # a worker: the controller writes the file
        session.config.workeroutput["leakscan"] = report
        return report
    return merged([report, *_worker_reports]) if _worker_reports else report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = _run_report(session)
    if report is None:
        return
    session.config.stash[_REPORT_KEY] = report
    if not hasattr(session.config, "workerinput"):
        path = report_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if not report["clean"] and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_REPORT_KEY = pytest.StashKey[dict[str, Any]]()


def _summary(report: dict[str, Any]) -> str:
    c = {
        key: report["scanned"].get(key, 0)
        for key in (
            "log records",
            "error bodies",
            "table items",
            "table scans",
            "distinct tables",
            "launched stacks",
            "secrets looked for",
        )
    }
    workers = f" over {report['workers']} workers" if report.get("workers") else ""
    return (
        f"{c['log records']} log records, {c['error bodies']} error bodies, {c['table items']} table items "
        f"({c['table scans']} scans of {c['distinct tables']} tables), {c['launched stacks']} launched stacks; "
        f"{c['secrets looked for']} secrets looked for; {report['seconds']:.1f} s{workers}"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    report = terminalreporter.config.stash.get(_REPORT_KEY, None)
    if report is None:
        return
    if report["clean"]:
        terminalreporter.write_line(f"leak scan: clean: {_summary(report)}")
        return
    terminalreporter.section("leak scan FAILED", sep="=", red=True, bold=True)
    for finding in report["findings"]:
        terminalreporter.write_line(
            f"{finding['kind']} ({finding['what']}) {finding['masked']} in {finding['where']} [{finding['test']}]",
            red=True,
        )
    for error in report["scanner_errors"]:
        terminalreporter.write_line(f"scanner error: {error}", red=True)
    terminalreporter.write_line(
        f"leak scan: {len(report['findings'])} findings; scanned {_summary(report)}; see {report_path()}"
    )

"""What the property tests share: one reproducible hypothesis setting, the transport seam of the
Mynaportal client, and generators of Individual Numbers and of hostile JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from chalicelib.adapters.mynaportal import MynaportalClient, PortalClientConfig, PortalEndpoints
from chalicelib.domain.individual_number import check_digit
from sandbox.personas import Card, MunicipalRecord, Persona
from sandbox.portal import Portal
from sandbox.web import create_sp_side

# Derandomized so that CI sees the same examples on every run (no example database either); no
# deadline, because two cores shared with other suites make wall-clock limits flaky, and each test's
# max_examples keeps the whole directory within about 30 seconds instead.
PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# A value no error, log line or repr may ever show: personal data stands in for every secret.
MARKER = "秘密の値"

# -- Individual Numbers --------------------------------------------------------------------------------

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
eleven_digits = st.text(alphabet="0123456789", min_size=11, max_size=11)
valid_numbers = eleven_digits.map(lambda digits: digits + str(check_digit(digits)))
invalid_numbers = st.builds(
    lambda digits, shift: digits + str((check_digit(digits) + shift) % 10),
    eleven_digits,
    st.integers(min_value=1, max_value=9),
)
# What the detector's docstring claims may stand between two digits: a space, a hyphen or dash, a
# comma or a full stop, before or after NFKC (U+3000, U+FF0D, U+FE63, U+FF0C, U+FF0E fold into them).
CLAIMED_SEPARATORS = (
    " ",
    "\t",
    "\u3000",
    "\xa0",
    "-",
    "\uff0d",
    "\ufe63",
    "\u2010",
    "\u2011",
    "\u2012",
    "\u2013",
    "\u2014",
    "\u2015",
    "\u2212",
    "\u30fc",
    ",",
    "\uff0c",
    ".",
    "\uff0e",
)
# Decimal digits of other scripts: the docstring says any Unicode decimal digit counts as its value.
DIGIT_SCRIPTS = (
    "0123456789",
    "０１２３４５６７８９",
    "٠١٢٣٤٥٦٧٨٩",  # Arabic-Indic
    "०१२३४५६७८९",  # Devanagari
    "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗",  # mathematical bold (NFKC folds them to ASCII)
)
# Text that can neither add a digit nor continue a number, to put around one.
plain_words = st.text(alphabet="あいうえお川崎市番号照会ABCxyz:/()", max_size=6)


@st.composite
def spelled(draw: st.DrawFn, number: str) -> str:
    """``number`` in one script's digits or a mix of two, with one claimed separator (or two kinds)
    between some pairs of digits."""
    first, second = draw(st.sampled_from(DIGIT_SCRIPTS)), draw(st.sampled_from(DIGIT_SCRIPTS))
    scripts = draw(st.integers(min_value=0, max_value=2**12 - 1))  # bit n set: digit n in the second
    separators = draw(st.sampled_from(CLAIMED_SEPARATORS)), draw(st.sampled_from(CLAIMED_SEPARATORS))
    gaps = draw(st.integers(min_value=0, max_value=2**12 - 1))  # bit n set: a separator before digit n
    kinds = draw(st.integers(min_value=0, max_value=2**12 - 1))  # bit n set: the second kind there
    return "".join(
        (separators[kinds >> n & 1] if n and gaps >> n & 1 else "")
        + (second if scripts >> n & 1 else first)[int(digit)]
        for n, digit in enumerate(number)
    )


spelled_valid_numbers = valid_numbers.flatmap(spelled)
spelled_invalid_numbers = invalid_numbers.flatmap(spelled)

# -- hostile JSON ------------------------------------------------------------------------------------

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**17, max_value=10**40)
    | st.floats()  # NaN and Infinity included: json.dumps spells them, strict JSON does not
    | st.text(max_size=12)
    | st.text(alphabet=st.characters(categories=["Cs", "Cc", "Co"]), max_size=4)
    | st.just(MARKER)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=15,
)


def dumps(value: Any, *, ascii_only: bool) -> bytes:
    """JSON text of ``value``; lone surrogates become escapes, or (not ASCII) CESU-style invalid UTF-8."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def mangled(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` as sent, or broken the ways a faulty peer breaks JSON."""
    broken = ["truncated", "inserted", "bom", "nested", "trailing", "invalid-utf8", "huge-int"]
    how = draw(st.sampled_from(["as-is"] * len(broken) + broken))
    at = draw(st.integers(min_value=0, max_value=len(body)))
    if how == "truncated":
        return body[:at]
    if how == "inserted":
        return body[:at] + draw(st.binary(min_size=1, max_size=4)) + body[at:]
    if how == "bom":
        return b"\xef\xbb\xbf" + body
    if how == "nested":
        depth = draw(st.integers(min_value=1, max_value=5000))
        return b"[" * depth + body + b"]" * depth
    if how == "trailing":
        return body + draw(st.sampled_from([b" x", b"{}", b"\x00", b",", b"]"]))
    if how == "invalid-utf8":
        return body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])) + body[at:]
    if how == "huge-int":
        return body[:at] + b"9" * draw(st.integers(min_value=20, max_value=5000)) + body[at:]
    return body


def object_text(pairs: list[tuple[str, bytes]]) -> bytes:
    """A JSON object written field by field, so that a key may appear twice."""
    members = [json.dumps(key).encode() + b":" + value for key, value in pairs]
    return b"{" + b",".join(members) + b"}"


# -- the Mynaportal client's transport seam -----------------------------------------------------------

LOOPBACK_ENDPOINTS = PortalEndpoints(
    authorize_url="http://127.0.0.1:9/online-authorization-web/oauth/authorize",
    token_url="http://127.0.0.1:9/online-authorization-web/oauth/token",
    request_url="http://127.0.0.1:9/online-resource-web/request",
    result_url="http://127.0.0.1:9/online-resource-web/result",
)


class _Response:
    """The part of ``urllib3.BaseHTTPResponse`` the client reads."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self._body = body

    def read(self, amount: int) -> bytes:
        return self._body[:amount]

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


Responder = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]


@dataclass
class ScriptedPool:
    """Stands in for the client's ``urllib3.PoolManager``: every POST is answered by ``respond``
    (path, body, headers) without a socket, and recorded."""

    respond: Responder
    calls: list[tuple[str, bytes]] = field(default_factory=list)

    def request(self, method: str, url: str, *, body: bytes, headers: dict[str, str], **_: Any) -> _Response:
        assert method == "POST"
        path = urlsplit(url).path
        self.calls.append((path, body))
        status, content = self.respond(path, body, headers)
        return _Response(status, content)


def scripted_client(
    respond: Responder, *, attempts: int = 3
) -> tuple[MynaportalClient, ScriptedPool, list[float]]:
    """A client whose every call is answered by ``respond``; it records its backoff instead of sleeping."""
    sleeps: list[float] = []
    config = PortalClientConfig(
        LOOPBACK_ENDPOINTS, client_cert=None, client_key=None, ca_bundle=None, result_attempts=attempts
    )
    client = MynaportalClient(config, sleep=sleeps.append)
    pool = ScriptedPool(respond)
    client._pool_manager = pool  # type: ignore[assignment]  # the transport seam: no socket in a property test
    return client, pool, sleeps


def canned(status: int, body: bytes) -> Responder:
    return lambda _path, _body, _headers: (status, body)


def sandbox_responder(portal: Portal) -> Responder:
    """The sandbox's own sp-side Flask app (its HTTP translation included), called in-process."""
    flask_client: FlaskClient = create_sp_side(portal, tls=False).test_client()

    def respond(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        answer = flask_client.post(path, data=body, headers=headers)
        return answer.status_code, answer.get_data()

    return respond


def exception_chain(error: BaseException) -> list[BaseException]:
    """``error`` and everything chained to it, explicitly (``from``) or implicitly (``__context__``)."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        pending.extend((current.__cause__, current.__context__))
    return seen


# -- residents, as the sandbox's persona files describe them -------------------------------------------

MUNICIPALITIES = (
    "神奈川県川崎市",
    "神奈川県横浜市",
    "東京都練馬区",
    "埼玉県さいたま市",
    "北海道余市郡余市町",
)
MAX_AMOUNT = 10**15 - 1
LOCAL_TAX_AMOUNT_LABELS = (
    "給与収入額",
    "給与所得額",
    "公的年金等収入額",
    "事業所得",
    "合計所得金額",
    "総所得金額等",
    "社会保険料控除額",
    "配偶者控除額",
    "扶養控除額",
    "基礎控除額",
    "所得控除合計額",
    "課税標準額",
    "扶養親族数",
    "市町村民税所得割額",
    "市町村民税均等割額",
    "道府県民税所得割額",
    "道府県民税均等割額",
    "年税額",
)
VACCINATION_TEXT_LABELS = ("予防接種の種類", "接種回数", "ロット番号", "医師名")
TAXATION_STATUS_LABELS = ("課税", "非課税", "均等割のみ", "未申告")


@st.composite
def amount_spellings(draw: st.DrawFn, amount: int) -> str:
    """``amount`` as a municipality might write it: plain or grouped by thousands, ASCII or
    full-width, with leading zeros or surrounding spaces."""
    text = draw(st.sampled_from(["{:d}", "{:,d}"])).format(amount)
    if "," not in text and draw(st.booleans()):
        text = "0" * draw(st.integers(min_value=1, max_value=3)) + text
    if draw(st.booleans()):
        text = text.translate(FULL_WIDTH).replace(",", "，")
    padding = st.sampled_from(["", " ", "\u3000", "\t"])
    return draw(padding) + text + draw(padding)


amounts = st.integers(min_value=0, max_value=MAX_AMOUNT) | st.integers(min_value=0, max_value=10_000_000)
free_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=24
) | st.sampled_from(["日本脳炎", "第1期 1回目", "JE2201", "光が丘 花", "ＭＲ（麻しん風しん混合）"])
municipalities = st.sampled_from(MUNICIPALITIES) | st.text(
    alphabet="東京都北海道京大阪府県市区町村郡上中下", min_size=1, max_size=12
)


@st.composite
def local_tax_fields(draw: st.DrawFn) -> dict[str, str]:
    fields = {"課税年度": str(draw(st.integers(min_value=2015, max_value=2030)))}
    if draw(st.booleans()):
        fields["課税区分"] = draw(st.sampled_from(TAXATION_STATUS_LABELS))
    for label in draw(st.lists(st.sampled_from(LOCAL_TAX_AMOUNT_LABELS), unique=True, max_size=6)):
        fields[label] = draw(amounts.flatmap(amount_spellings))
    return fields


@st.composite
def vaccination_fields(draw: st.DrawFn, around: date) -> dict[str, str]:
    given = draw(st.dates(min_value=date(around.year - 7, 1, 1), max_value=date(around.year + 1, 12, 31)))
    fields = {"接種日": f"{given:%Y%m%d}"}
    for label in draw(st.lists(st.sampled_from(VACCINATION_TEXT_LABELS), unique=True, max_size=4)):
        fields[label] = draw(free_text)
    return fields


@st.composite
def personas(draw: st.DrawFn, around: date, min_records: int = 0) -> Persona:
    """A resident the sandbox could hold, with generated records of both datasets (at least
    ``min_records`` of each)."""
    records = st.builds(MunicipalRecord, municipality=municipalities, fields=local_tax_fields())
    shots = st.builds(MunicipalRecord, municipality=municipalities, fields=vaccination_fields(around))
    return Persona(
        id="generated",
        display_name="生成 太郎",
        description_en="Generated by a property test.",
        card=Card(pin="1234", status="active"),
        local_tax=tuple(draw(st.lists(records, min_size=min_records, max_size=3))),
        vaccination=tuple(draw(st.lists(shots, min_size=min_records, max_size=4))),
    )

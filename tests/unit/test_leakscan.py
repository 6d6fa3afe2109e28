"""The leak scan (tests/leakscan.py) finds what it must and only that: planted persona values,
Individual Numbers, tokens and private keys are reported (masked) wherever the relay could put them,
while KMS ciphertexts, HMAC pseudonyms and token fingerprints are not. The last test runs a whole
pytest session with leaks planted through the real collectors and checks that it fails."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from chalicelib.adapters.kms_envelope import KmsEnvelope
from chalicelib.adapters.kms_pseudonym import KmsPseudonymizer
from chalicelib.domain.flow import fingerprint
from chalicelib.domain.individual_number import check_digit
from tests.conftest import REPO_ROOT
from tests.leakscan import (
    Hit,
    LeakScan,
    Material,
    Scanner,
    demo_partner_private_members,
    load_persona_values,
    pem_key_lines,
)

TOKEN = "T4QGfGAt4v1k4Ckr988oOak4rmKdQHT96KuFDoB6BK0"  # the shape of secrets.token_urlsafe(32)
NOT_A_PERSONA_NUMBER = "98765432109" + str(check_digit("98765432109"))


def private_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    found = Scanner(load_persona_values(), demo_partner_private_members())
    found.add_secret(TOKEN, "relay secret")
    return found


def kinds(hits: list[Hit]) -> list[tuple[str, str]]:
    return sorted((hit.kind, hit.what) for hit in hits)


# -- persona values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        '{"level":"INFO","message":"request","resident":"山田 太郎"}',
        '{"level":"INFO","message":"request","resident":"山田太郎"}',
        json.dumps({"message": "request", "resident": "山田 太郎"}),  # \uXXXX-escaped
        "GET /callback?name=%E5%B1%B1%E7%94%B0%20%E5%A4%AA%E9%83%8E",
    ],
    ids=["raw", "without-space", "json-escaped", "percent-encoded"],
)
def test_a_persona_name_in_a_log_line_is_found_however_it_is_spelled(scanner: Scanner, line: str) -> None:
    hits = scanner.scan(line)
    assert kinds(hits) == [("persona value", "salaried: name")]
    assert "山田" not in hits[0].masked
    assert "太郎" not in hits[0].masked


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('{"municipality":"神奈川県川崎市"}', "salaried: local_tax municipality"),
        ('{"salary_income":3560000}', "salaried: local_tax 給与所得額"),
        ("所得 3,560,000円", "salaried: local_tax 給与所得額"),
        ('{"date":"2019-08-12"}', "parent-vaccination: vaccination 接種日"),
        ('{"lot":"KH0123"}', "parent-vaccination: vaccination ロット番号"),
        ('{"doctor":"光が丘 花"}', "parent-vaccination: vaccination 医師名"),
    ],
)
def test_persona_record_values_are_found(scanner: Scanner, text: str, what: str) -> None:
    assert kinds(scanner.scan(text)) == [("persona value", what)]


@pytest.mark.parametrize(
    "text",
    [
        '{"taxation_status":"課税","dose":"1回目","vaccine":"BCG"}',  # shorter than 4: vocabulary
        '{"fiscal_year":2026,"per_capita":3500,"port":42800}',  # fewer than 6 digits
        '{"spouse_deduction":330000,"max_bytes":1000000}',  # round amounts
        '{"at":"2019-08-12T10:00:00+09:00"}',  # a timestamp is not a date-only value
        # microseconds that read like a persona amount (118300, 年税額), as isoformat() writes them
        '{"created_at":"2026-11-27T15:51:23.118300+00:00","at":"2026-11-27 15:51:23,118300"}',
        '{"id":"x3560000y","blob":"QUJDKH0123REVG"}',  # inside an identifier or base64
        '{"stamp":1795777217278,"telegram":"TL-00000001-261127105844-0001"}',
        '{"interaction_id":"00000000-0000-a000-b000-c00000000000","id":"x_621498320257"}',
    ],
    ids=[
        "short-text",
        "small-numbers",
        "round-amounts",
        "timestamp",
        "fraction-of-a-second",
        "inside-identifiers",
        "long-digit-runs",
        "uuid-and-prefixed-ids",
    ],
)
def test_generic_values_and_values_inside_identifiers_are_not_flagged(scanner: Scanner, text: str) -> None:
    assert scanner.scan(text) == []


# -- Individual Numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        NOT_A_PERSONA_NUMBER,
        f"{NOT_A_PERSONA_NUMBER[:4]} {NOT_A_PERSONA_NUMBER[4:8]} {NOT_A_PERSONA_NUMBER[8:]}",
        f"{NOT_A_PERSONA_NUMBER[:4]}-{NOT_A_PERSONA_NUMBER[4:8]}-{NOT_A_PERSONA_NUMBER[8:]}",
        NOT_A_PERSONA_NUMBER.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
    ],
    ids=["plain", "spaced", "hyphenated", "full-width"],
)
def test_a_valid_individual_number_in_an_error_body_is_found(scanner: Scanner, spelling: str) -> None:
    body = json.dumps(
        {"type": "urn:myna-relay:problem:x", "detail": f"番号 {spelling} は使えません"}, ensure_ascii=False
    )
    hits = scanner.scan(body)
    assert kinds(hits) == [("individual number", "valid check digit")]
    assert hits[0].masked == NOT_A_PERSONA_NUMBER[:2] + "*" * 10


def test_a_twelve_digit_number_with_a_wrong_check_digit_is_not_flagged(scanner: Scanner) -> None:
    wrong = NOT_A_PERSONA_NUMBER[:11] + str((int(NOT_A_PERSONA_NUMBER[11]) + 1) % 10)
    assert scanner.scan(f'{{"detail":"{wrong}"}}') == []


def test_the_individual_numbers_of_the_individual_number_persona_are_found(scanner: Scanner) -> None:
    hits = scanner.scan('{"note":"6214-9832-0257"}')
    assert kinds(hits) == [
        ("individual number", "valid check digit"),
        ("persona value", "individual-number: local_tax 整理番号"),
    ]


# -- tokens and keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"GET /portal/callback?code={TOKEN}&state=x",
        f'{{"access_token":"{TOKEN}"}}',
        f"Authorization: DPoP {TOKEN}",
        f"urn:ietf:params:oauth:request_uri:{TOKEN}",
        f"prefix_{TOKEN}",  # glued to other URL-safe characters
    ],
)
def test_a_recorded_token_is_found_and_masked(scanner: Scanner, text: str) -> None:
    hits = scanner.scan(text)
    assert kinds(hits) == [("token", "relay secret")]
    assert hits[0].masked == f"{TOKEN[:4]}…(43 chars)"


def test_a_pem_private_key_and_a_private_jwk_are_found(scanner: Scanner) -> None:
    private_jwk = ECKey.generate_key("P-256").as_dict(private=True)
    text = json.dumps({"key": private_pem(), "nested": json.dumps({"jwk": private_jwk})})
    assert kinds(scanner.scan(text)) == [
        ("private key", "JWK with a private 'd' member"),
        ("private key", "PEM private key block"),
    ]


def test_a_demo_partner_private_member_alone_is_found(scanner: Scanner) -> None:
    demo_d = json.loads((REPO_ROOT / "local/partners/demo-bank.DEMO-ONLY-private-jwks.json").read_text())[
        "keys"
    ][0]["d"]
    assert [hit.kind for hit in scanner.scan(f"value={demo_d}")] == ["private key"]


def test_a_line_of_the_sandbox_tls_key_is_found_without_its_pem_armour(scanner: Scanner) -> None:
    lines = pem_key_lines(private_pem())
    hits = scanner.scan(f'{{"blob":"{lines[1]}"}}', key_lines=lines)
    assert kinds(hits) == [("private key", "line of the sandbox's TLS keys")]


def test_a_value_stored_base64_encoded_is_found(scanner: Scanner) -> None:
    # GIVEN a name, base64-encoded (a "ciphertext" that is not one), and a number in a JWS payload
    encoded = base64.b64encode("山田 太郎".encode()).decode()
    payload = base64.urlsafe_b64encode(json.dumps({"n": NOT_A_PERSONA_NUMBER}).encode()).decode().rstrip("=")
    jws = f"eyJhbGciOiJFUzI1NiJ9.{payload}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk"
    # WHEN they are scanned THEN both are found, and said to be encoded
    assert kinds(scanner.scan(json.dumps({"ciphertext": encoded, "receipt": jws}))) == [
        ("individual number", "valid check digit (base64-encoded)"),
        ("persona value", "salaried: name (base64-encoded)"),
    ]


# -- what is not a leak ------------------------------------------------------------------------------


def test_encrypted_and_pseudonymised_data_is_not_flagged(
    scanner: Scanner, resources: dict[str, str], kms_client: Any
) -> None:
    # GIVEN a persona's record, a valid Individual Number, a token and a private key, all in one payload
    payload = json.dumps(
        {
            "name": "山田 太郎",
            "income": 3560000,
            "number": NOT_A_PERSONA_NUMBER,
            "token": TOKEN,
            "key": private_pem(),
        },
        ensure_ascii=False,
    ).encode()
    # WHEN the relay stores it as it does: KMS ciphertext, HMAC pseudonym, SHA-256 fingerprint
    envelope = KmsEnvelope(kms_client, resources["RELAY_DATA_KEY_ID"])
    pseudonyms = KmsPseudonymizer(kms_client, resources["RELAY_PSEUDONYM_KEY_ID"])
    items = [
        {
            "pk": {"S": f"DELIVERY#{n}"},
            "ciphertext": {
                "S": base64.b64encode(envelope.encrypt(payload, context={"flow_id": str(n)})).decode()
            },
            "binary": {"B": base64.b64encode(envelope.encrypt(payload, context={"flow_id": "b"})).decode()},
            "resident_pseudonym": {"S": pseudonyms.pseudonym(f"resident-of-flow:{n}")},
            "token_hash": {"S": fingerprint(TOKEN)},
        }
        for n in range(20)
    ]
    scan = LeakScan(scanner)
    scan.current = Material("planted")
    for item in items:
        scan.add_item("myna-relay-test-state", item)
    scan.flush(scan.current)
    # THEN nothing is found
    assert scan.findings == []
    assert scan.counts["table items"] == 20


def test_a_planted_table_item_is_reported_with_its_table_and_test(scanner: Scanner) -> None:
    scan = LeakScan(scanner)
    scan.current = Material("tests/x.py::test_y")
    scan.add_item(
        "myna-relay-test-state",
        {"pk": {"S": "FLOW#abc"}, "document": {"S": json.dumps({"k": private_pem()})}},
    )
    scan.flush(scan.current)
    assert [(f.kind, f.source, f.where, f.test) for f in scan.findings] == [
        ("private key", "table", "table myna-relay-test-state (pk=FLOW#…)", "tests/x.py::test_y")
    ]


def audit_item(**fields: Any) -> dict[str, Any]:
    record = {
        "event": "sealed",
        "requester_id": "acme-bank",
        "outcome": "sealed",
        "municipalities": [],
        **fields,
    }
    return {
        "pk": {"S": "FLOW#x"},
        "sk": {"S": "2026#00#r"},
        "document": {"S": json.dumps(record, ensure_ascii=False)},
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"municipalities": ["神奈川県川崎市", "東京都世田谷区"]}, []),
        ({"municipalities": ["山田 太郎"]}, [("persona value", "salaried: name")]),
        (
            {"municipalities": ["神奈川県川崎市"], "outcome": "神奈川県川崎市"},
            [("persona value", "salaried: local_tax municipality")],
        ),
    ],
    ids=["providers-only", "a-name-among-providers", "a-municipality-elsewhere"],
)
def test_an_audit_record_may_name_its_providing_municipalities_and_nothing_else(
    scanner: Scanner, fields: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    # The audit record mirrors the portal's provision record (情報提供等記録): the provider is named.
    scan = LeakScan(scanner)
    scan.current = Material("planted")
    scan.add_item("myna-relay-test-audit", audit_item(**fields))
    scan.flush(scan.current)
    assert sorted((f.kind, f.what) for f in scan.findings) == expected


# -- the plugin, end to end -------------------------------------------------------------------------

PLANTED = """
import base64
import json

import boto3
from chalice import Chalice, Response
from chalice.test import Client
from moto import mock_aws

from chalicelib.domain.flow import new_secret
from chalicelib.telemetry import logger

PEM = {pem!r}
NUMBER = {number!r}


def test_plants_one_leak_of_each_kind():
    # a persona name in a relay log line
    logger.info("resident signed in", extra={{"resident": "山田 太郎"}})
    # a valid Individual Number in an error body
    app = Chalice("planted")

    @app.route("/refuse")
    def refuse():
        return Response(body=json.dumps({{"detail": "number " + NUMBER}}), status_code=400)

    with Client(app) as client:
        assert client.http.get("/refuse?code=secret").status_code == 400
    # a private key and a relay token in table items; a ciphertext that is fine
    token = new_secret()
    with mock_aws():
        session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="ap-northeast-1")
        dynamodb, kms = session.client("dynamodb"), session.client("kms")
        dynamodb.create_table(
            TableName="planted",
            KeySchema=[{{"AttributeName": "pk", "KeyType": "HASH"}}],
            AttributeDefinitions=[{{"AttributeName": "pk", "AttributeType": "S"}}],
            BillingMode="PAY_PER_REQUEST",
        )
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        sealed = kms.encrypt(KeyId=key_id, Plaintext="山田 太郎 ".encode() + NUMBER.encode())["CiphertextBlob"]
        dynamodb.put_item(TableName="planted", Item={{"pk": {{"S": "KEY#1"}}, "pem": {{"S": PEM}}}})
        dynamodb.put_item(TableName="planted", Item={{"pk": {{"S": "TOKEN#1"}}, "raw": {{"S": token}}}})
        dynamodb.put_item(
            TableName="planted",
            Item={{"pk": {{"S": "SEALED#1"}}, "blob": {{"S": base64.b64encode(sealed).decode()}}}},
        )
        # a name written, then overwritten; a base64-encoded number updated in, then deleted
        dynamodb.put_item(TableName="planted", Item={{"pk": {{"S": "LATER#1"}}, "v": {{"S": "佐藤 花子"}}}})
        dynamodb.put_item(TableName="planted", Item={{"pk": {{"S": "LATER#1"}}, "v": {{"S": "clean"}}}})
        dynamodb.update_item(
            TableName="planted",
            Key={{"pk": {{"S": "GONE#1"}}}},
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={{":v": {{"S": base64.b64encode(NUMBER.encode()).decode()}}}},
        )
        dynamodb.delete_item(TableName="planted", Key={{"pk": {{"S": "GONE#1"}}}})
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist-workers"])
def test_a_session_with_planted_leaks_fails_and_reports_them_masked(
    tmp_path: Path, workers: list[str]
) -> None:
    # GIVEN a session whose only test passes but makes the relay's collectors see one leak of each kind
    pem = private_pem()
    (tmp_path / "test_planted.py").write_text(
        PLANTED.format(pem=pem, number=NOT_A_PERSONA_NUMBER), encoding="utf-8"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    report = tmp_path / "leakscan.json"
    env = {**os.environ, "MYNA_LEAKSCAN_REPORT": str(report)}
    env.pop("PYTEST_ADDOPTS", None)
    # WHEN it runs with the plugin
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(tmp_path),
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            "-p",
            "tests.leakscan",
            "-p",
            "no:cacheprovider",
            "-q",
            *workers,  # under pytest-xdist the workers' reports reach the controller's verdict
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # THEN the run fails although its test passed
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert "leak scan FAILED" in run.stdout
    # AND the report names each leak, where it was and in which test, masked
    written = json.loads(report.read_text(encoding="utf-8"))
    assert written["clean"] is False
    assert written["scanner_errors"] == []
    found = sorted(
        (f["kind"], f["what"], f["source"], f["where"].split(" at ")[0]) for f in written["findings"]
    )
    assert found == [
        ("individual number", "valid check digit", "error body", "error body GET /refuse 400"),
        ("individual number", "valid check digit (base64-encoded)", "table", "table planted (pk=GONE#…)"),
        ("persona value", "moved: name", "table", "table planted (pk=LATER#…)"),
        ("persona value", "salaried: name", "log", "log myna-relay INFO"),
        ("private key", "PEM private key block", "table", "table planted (pk=KEY#…)"),
        ("token", "relay secret", "table", "table planted (pk=TOKEN#…)"),
    ]
    assert {f["test"] for f in written["findings"]} == {"test_planted.py::test_plants_one_leak_of_each_kind"}
    # AND no value is shown in full, nor the query of the refused request
    shown = run.stdout + report.read_text(encoding="utf-8")
    for value in ("山田 太郎", NOT_A_PERSONA_NUMBER, pem_key_lines(pem)[0], "code=secret"):
        assert value not in shown

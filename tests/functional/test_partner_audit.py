"""Partner reconciliation over HTTP: ``GET /v1/audit``.

A partner reads its own audit records with a fresh ``private_key_jwt`` client assertion sent as a
bearer token (``aud`` = the endpoint URL or the issuer, single-use ``jti``), pages through them with
an opaque cursor, and never sees another partner's records or any data value. Every refusal is
answered with its exact contract: 401 RFC 6750 JSON and ``WWW-Authenticate: Bearer
error="invalid_token"`` for credentials, 400 ``application/problem+json`` naming the parameter for
the query, and a refused request does not spend the assertion.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from joserfc import jwt

from chalicelib import container
from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
from chalicelib.domain.audit import AuditRecord
from chalicelib.domain.checkpoints import StoredRecord
from chalicelib.domain.clock import SystemClock
from chalicelib.domain.partner_audit import PartnerAuditService
from chalicelib.domain.registry import PartnerRegistry
from tests.fakes import ShiftedClock
from tests.functional.conftest import ISSUER, Journey
from tests.functional.test_delivery import pick_up, redeemed, run_due
from tests.partner_helpers import CLIENT_ASSERTION_TYPE, Pkce, TestPartner, hmac_jws, unsigned_jws

AUDIT_URL = f"{ISSUER}/v1/audit"
RECORDS_PER_PICKED_UP_FLOW = 8  # pushed, shown, continued, authorised, started, received, sealed, picked up
PROBLEM = "application/problem+json"

Items = list[dict[str, Any]]


# -- fixtures and helpers ---------------------------------------------------------------------------


def registry(dynamodb_client: Any, resources: dict[str, str]) -> PartnerRegistry:
    store = DynamoPartnerStore(dynamodb_client, resources["RELAY_PARTNERS_TABLE"], allow_loopback=True)
    return PartnerRegistry(store, SystemClock(), allow_loopback=True)


@pytest.fixture
def clock(journey: Journey, monkeypatch: pytest.MonkeyPatch) -> ShiftedClock:
    """The relay's clock (real time plus an offset), followed by the partner's assertions."""
    shifted = ShiftedClock()
    container.reset()
    monkeypatch.setattr(container, "_container", container.Container(clock=shifted))
    journey.partner.clock = shifted.timestamp
    return shifted


@pytest.fixture
def second_partner(resources: dict[str, str], dynamodb_client: Any, clock: ShiftedClock) -> TestPartner:
    """Another registered partner, with its own keys and redirect URI."""
    beta = TestPartner(
        client_id="beta-bank",
        redirect_uri="https://beta.example/callback",
        kid="beta-sig-1",
        clock=clock.timestamp,
    )
    registry(dynamodb_client, resources).register(
        beta.document(names={"ja": "ベータ銀行", "en": "Beta Bank"})
    )
    return beta


@pytest.fixture
def audit_table(dynamodb_client: Any, resources: dict[str, str]) -> Callable[[], Items]:
    """Every audit record as stored, in key order."""

    def scan() -> Items:
        items = dynamodb_client.scan(TableName=resources["RELAY_AUDIT_TABLE"], ConsistentRead=True)["Items"]
        return sorted(items, key=lambda item: (item["sk"]["S"], item["pk"]["S"]))

    return scan


@pytest.fixture
def spent_jtis(dynamodb_client: Any, resources: dict[str, str]) -> Callable[[], list[str]]:
    """The replay store's entries (the state table's JTI items)."""

    def scan() -> list[str]:
        items = dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"], ConsistentRead=True)["Items"]
        return sorted(item["pk"]["S"] for item in items if item["pk"]["S"].startswith("JTI#"))

    return scan


def journey_of(journey: Journey, partner: TestPartner, state: str) -> Journey:
    """Another flow in the same relay and sandbox, by ``partner``."""
    return Journey(client=journey.client, partner=partner, sandbox=journey.sandbox, pkce=Pkce(), state=state)


def completed_flow(journey: Journey, persona: str = "salaried") -> None:
    """One flow from PAR to a successful pickup."""
    token, _ = redeemed(journey, persona)
    assert run_due() == {"ready": 1}
    assert pick_up(journey, token).status_code == 200


def audit(
    journey: Journey,
    partner: TestPartner | None = None,
    *,
    authorization: str | None = "default",
    query: str | None = None,
    **params: str,
) -> Any:
    """GET /v1/audit with a fresh assertion for the endpoint (or the given Authorization header)."""
    signer = partner or journey.partner
    headers = {}
    if authorization == "default":
        authorization = f"Bearer {signer.client_assertion(ISSUER)}"
    if authorization is not None:
        headers["Authorization"] = authorization
    suffix = query if query is not None else urlencode(params)
    return journey.client.http.get(f"/v1/audit{'?' + suffix if suffix else ''}", headers=headers)


def page_body(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.body
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = json.loads(response.body)
    assert set(body) == {"records", "next"}
    return body


def all_pages(
    journey: Journey, partner: TestPartner | None = None, **params: str
) -> list[list[dict[str, Any]]]:
    """Follow ``next`` from the first page to the last."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = dict(params, **({"after": cursor} if cursor else {}))
        body = page_body(audit(journey, partner, **query))
        pages.append(body["records"])
        cursor = body["next"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "paging does not end"


def record_ids_of(items: Items, partner_id: str) -> list[str]:
    documents = [json.loads(item["document"]["S"]) for item in items]
    return [document["record_id"] for document in documents if document["requester_id"] == partner_id]


def assert_invalid_token(response: Any, check: str) -> None:
    assert response.status_code == 401, response.body
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = json.loads(response.body)
    assert body["error"] == "invalid_token"
    assert body["error_description"].startswith(f"{check}: "), body


def assert_bad_parameter(response: Any, parameter: str) -> None:
    assert response.status_code == 400, response.body
    assert response.headers["Content-Type"] == PROBLEM
    body = json.loads(response.body)
    assert body["type"] == "urn:myna-relay:problem:invalid-request"
    assert body["check"] == parameter
    assert body["status"] == 400


def claims_of(partner: TestPartner, **changes: Any) -> dict[str, Any]:
    now = int(partner.clock())
    claims = {
        "iss": partner.client_id,
        "sub": partner.client_id,
        "aud": ISSUER,
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    claims.update(changes)
    return claims


def _signed_by_another_key(partner: TestPartner) -> str:
    impostor = TestPartner(client_id=partner.client_id, kid=partner.kid, clock=partner.clock)
    return impostor.client_assertion(ISSUER)


def _expired(partner: TestPartner) -> str:
    now = int(partner.clock())
    return partner.client_assertion(ISSUER, iat=now - 90, exp=now - 30)


def _alg_none(partner: TestPartner) -> str:
    return unsigned_jws({"alg": "none", "typ": "JWT"}, claims_of(partner))


def _hs256_keyed_with_the_public_key(partner: TestPartner) -> str:
    jwk = dict(partner.signing_key.as_dict(private=False))
    jwk.update({"kid": partner.kid, "use": "sig", "alg": "ES256"})
    secret = json.dumps(jwk).encode()
    return hmac_jws({"alg": "HS256", "typ": "JWT", "kid": partner.kid}, claims_of(partner), secret)


def _embedded_jwk(partner: TestPartner) -> str:
    header = {"alg": "ES256", "kid": partner.kid, "jwk": dict(partner.signing_key.as_dict(private=False))}
    return jwt.encode(header, claims_of(partner), partner.signing_key)


# -- reading one's own records ----------------------------------------------------------------------


def test_a_partner_pages_through_all_its_records_without_duplicates_or_gaps(
    journey: Journey, clock: ShiftedClock, audit_table: Callable[[], Items]
) -> None:
    # GIVEN a partner with two flows completed through pickup
    completed_flow(journey)
    completed_flow(journey_of(journey, journey.partner, "partner-state-2"), "pensioner")
    expected = record_ids_of(audit_table(), "acme-bank")
    assert len(expected) == 2 * RECORDS_PER_PICKED_UP_FLOW
    # WHEN it follows the cursor three records at a time
    pages = all_pages(journey, month=f"{clock.now():%Y-%m}", limit="3")
    # THEN every page but the last is full, and together they are every record once, in key order
    assert [len(page) for page in pages] == [3, 3, 3, 3, 3, 1]
    seen = [record["record_id"] for page in pages for record in page]
    assert seen == expected
    assert len(set(seen)) == len(seen)
    records = [AuditRecord.model_validate(record) for page in pages for record in page]
    assert {record.requester_id for record in records} == {"acme-bank"}
    assert len({record.interaction_id for record in records}) == 2
    assert [record.event.value for record in records].count("picked_up") == 2


def test_without_parameters_the_answer_is_the_current_month_in_pages_of_fifty(
    journey: Journey, clock: ShiftedClock, audit_table: Callable[[], Items]
) -> None:
    # GIVEN a partner with one completed flow
    completed_flow(journey)
    # WHEN it asks without any parameter
    body = page_body(audit(journey))
    # THEN it gets this month's records in one page (50 fit), and no cursor
    assert [record["record_id"] for record in body["records"]] == record_ids_of(audit_table(), "acme-bank")
    assert body["next"] is None


def test_a_month_without_records_is_an_empty_last_page(journey: Journey, clock: ShiftedClock) -> None:
    # GIVEN a partner whose records are all of this month
    completed_flow(journey)
    # WHEN it asks for a month long past
    body = page_body(audit(journey, month="2020-01"))
    # THEN the page is empty and the last
    assert body == {"records": [], "next": None}


def test_a_partner_never_sees_another_partners_records(
    journey: Journey, clock: ShiftedClock, second_partner: TestPartner, audit_table: Callable[[], Items]
) -> None:
    # GIVEN two partners, each with its own keys and one completed flow
    completed_flow(journey)
    completed_flow(journey_of(journey, second_partner, "beta-state-1"), "pensioner")
    items = audit_table()
    acme_ids, beta_ids = record_ids_of(items, "acme-bank"), record_ids_of(items, "beta-bank")
    assert len(acme_ids) == len(beta_ids) == RECORDS_PER_PICKED_UP_FLOW
    # WHEN each reads the audit endpoint with its own assertion
    beta_seen = [r["record_id"] for page in all_pages(journey, second_partner, limit="5") for r in page]
    acme_seen = [r["record_id"] for page in all_pages(journey, limit="5") for r in page]
    # THEN each sees exactly its own records and none of the other's
    assert beta_seen == beta_ids
    assert acme_seen == acme_ids
    assert not set(beta_seen) & set(acme_ids)


def test_the_answer_carries_no_data_values(
    journey: Journey, clock: ShiftedClock, audit_table: Callable[[], Items]
) -> None:
    # GIVEN a completed flow of the salaried persona (income 5,200,000, name 山田)
    completed_flow(journey, "salaried")
    # WHEN the partner reads its records
    response = audit(journey)
    body = page_body(response)
    # THEN the records are the audit fields only, and no value of the data appears anywhere
    assert len(body["records"]) == RECORDS_PER_PICKED_UP_FLOW
    for record in body["records"]:
        assert set(record) <= set(AuditRecord.model_fields)
        # 不開示 (番号法 第23条): every record says it; the portal never marks one (docs/mynaportal.md)
        assert record["withheld_from_disclosure"] is False
    text = response.body.decode()
    for value in ("5200000", "3680000", "5,200,000", "山田", "太郎", "2050000"):
        assert value not in text


def test_the_issuer_as_a_string_is_accepted_as_audience(journey: Journey, clock: ShiftedClock) -> None:
    # GIVEN an assertion addressed to the issuer (FAPI 2.0 Security Profile final, 5.3.2.1 item 8)
    assertion = journey.partner.client_assertion(ISSUER)
    # WHEN it is sent as the bearer token
    response = audit(journey, authorization=f"Bearer {assertion}")
    # THEN it is accepted
    assert page_body(response) == {"records": [], "next": None}


@pytest.mark.parametrize("scheme", ["bearer ", "BEARER ", "Bearer   "])
def test_the_bearer_scheme_name_is_case_insensitive_and_may_be_followed_by_several_spaces(
    journey: Journey, clock: ShiftedClock, scheme: str
) -> None:
    # GIVEN a valid assertion WHEN the scheme is spelt in another case, or followed by more than
    # one space (RFC 9110 sections 11.1 and 11.4)
    response = audit(journey, authorization=f"{scheme}{journey.partner.client_assertion(ISSUER)}")
    # THEN it is accepted
    assert response.status_code == 200


# -- credentials --------------------------------------------------------------------------------------


def test_a_replayed_assertion_is_refused(
    journey: Journey, clock: ShiftedClock, spent_jtis: Callable[[], list[str]]
) -> None:
    # GIVEN an assertion that was accepted once
    assertion = journey.partner.client_assertion(ISSUER)
    assert audit(journey, authorization=f"Bearer {assertion}").status_code == 200
    spent = spent_jtis()
    # WHEN it is sent again
    replayed = audit(journey, authorization=f"Bearer {assertion}")
    # THEN it is refused, and the replay store is as it was
    assert_invalid_token(replayed, "client_assertion.jti")
    assert spent_jtis() == spent


def test_an_assertion_spent_at_the_token_endpoint_cannot_be_spent_again_here(
    journey: Journey, clock: ShiftedClock
) -> None:
    # GIVEN an assertion addressed to the issuer and used to redeem a code
    assertion = journey.partner.client_assertion(ISSUER)
    issued = journey.redeem(
        journey.to_partner_code(), client_assertion_type=CLIENT_ASSERTION_TYPE, client_assertion=assertion
    )
    assert issued.status_code == 200, issued.body
    # WHEN the same assertion is offered to the audit endpoint
    response = audit(journey, authorization=f"Bearer {assertion}")
    # THEN its jti is already spent (one replay namespace per client)
    assert_invalid_token(response, "client_assertion.jti")


@pytest.mark.parametrize(
    ("make_assertion", "check"),
    [
        pytest.param(
            lambda p: p.client_assertion("https://other-as.example/v1/audit"),
            "client_assertion.aud",
            id="foreign-aud",
        ),
        pytest.param(lambda p: p.client_assertion(f"{ISSUER}/token"), "client_assertion.aud", id="token-aud"),
        pytest.param(lambda p: p.client_assertion(AUDIT_URL), "client_assertion.aud", id="endpoint-url-aud"),
        pytest.param(
            lambda p: p.client_assertion([ISSUER]), "client_assertion.aud", id="array-of-the-issuer-aud"
        ),
        pytest.param(
            lambda p: p.client_assertion([ISSUER, "https://elsewhere.example"]),
            "client_assertion.aud",
            id="array-with-the-issuer-aud",
        ),
        pytest.param(_expired, "client_assertion.exp", id="expired"),
        pytest.param(
            lambda p: p.client_assertion(ISSUER, exp=int(p.clock()) + 126),
            "client_assertion.lifetime",
            id="lifetime-over-120s",
        ),
        pytest.param(_signed_by_another_key, "client_assertion.signature", id="signed-by-another-key"),
        pytest.param(_alg_none, "client_assertion.alg", id="alg-none"),
        pytest.param(_hs256_keyed_with_the_public_key, "client_assertion.alg", id="hs256-public-key-secret"),
        pytest.param(_embedded_jwk, "client_assertion.header", id="jwk-header"),
        pytest.param(
            lambda p: p.client_assertion(ISSUER, sub="someone-else"),
            "client_assertion.sub",
            id="sub-not-iss",
        ),
        pytest.param(
            lambda p: TestPartner(client_id="ghost-bank", kid="ghost-sig-1").client_assertion(ISSUER),
            "client_id",
            id="unknown-client",
        ),
        pytest.param(lambda p: "not-a-jwt", "client_assertion", id="not-a-jws"),
    ],
)
def test_a_bad_assertion_is_refused_and_spends_nothing(
    journey: Journey,
    clock: ShiftedClock,
    spent_jtis: Callable[[], list[str]],
    make_assertion: Callable[[TestPartner], str],
    check: str,
) -> None:
    # GIVEN an assertion that fails one check
    assertion = make_assertion(journey.partner)
    # WHEN it is sent as the bearer token
    response = audit(journey, authorization=f"Bearer {assertion}")
    # THEN it is refused naming that check, and no jti is recorded
    assert_invalid_token(response, check)
    assert spent_jtis() == []


def test_an_assertion_signed_by_another_registered_partner_is_refused(
    journey: Journey, clock: ShiftedClock, second_partner: TestPartner
) -> None:
    # GIVEN the second partner's assertion claiming to be the first partner (its own key, iss=sub=acme)
    assertion = second_partner.client_assertion(ISSUER, iss="acme-bank", sub="acme-bank")
    # WHEN it is sent
    response = audit(journey, authorization=f"Bearer {assertion}")
    # THEN the first partner's registered keys do not verify it
    assert_invalid_token(response, "client_assertion.kid")


def test_a_disabled_partner_is_refused(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a partner the operator has disabled
    registry(dynamodb_client, resources).set_enabled("acme-bank", enabled=False)
    # WHEN it sends a valid assertion THEN it is refused
    assert_invalid_token(audit(journey), "client_id")


@pytest.mark.parametrize(
    "make_authorization",
    [
        pytest.param(lambda assertion: None, id="no-authorization"),
        pytest.param(lambda assertion: f"DPoP {assertion}", id="dpop-scheme"),
        pytest.param(
            lambda assertion: "Basic " + base64.b64encode(b"acme-bank:secret").decode(), id="basic-scheme"
        ),
        pytest.param(lambda assertion: "Bearer", id="bearer-without-token"),
        pytest.param(lambda assertion: f"Bearer {assertion} {assertion}", id="two-tokens"),
        pytest.param(lambda assertion: f"Bearer {assertion}, Bearer {assertion}", id="repeated-header"),
    ],
)
def test_only_a_bearer_client_assertion_is_accepted(
    journey: Journey, clock: ShiftedClock, make_authorization: Callable[[str], str | None]
) -> None:
    # GIVEN a valid assertion, offered in some other way than "Authorization: Bearer <assertion>"
    authorization = make_authorization(journey.partner.client_assertion(ISSUER))
    # WHEN the request is sent THEN it is refused at the Authorization header
    assert_invalid_token(audit(journey, authorization=authorization), "authorization")


def test_an_access_token_is_not_a_credential_here(journey: Journey, clock: ShiftedClock) -> None:
    # GIVEN a DPoP-bound access token the partner holds for a delivery
    token, _ = redeemed(journey)
    # WHEN it is offered as a bearer token, or as a query parameter without any header
    as_bearer = audit(journey, authorization=f"Bearer {token}")
    in_query = audit(journey, authorization=None, access_token=token)
    # THEN both are refused
    assert_invalid_token(as_bearer, "client_assertion")
    assert_invalid_token(in_query, "authorization")


# -- query parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("month=2026-13", "month"),
        ("month=2026-1", "month"),
        ("month=26-11", "month"),
        ("month=2026%2F11", "month"),
        ("month=2026-11-01", "month"),
        ("month=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-%EF%BC%91%EF%BC%91", "month"),  # full-width digits
        ("month=", "month"),
        ("month=2026-11&month=2026-10", "month"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=1.5", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("after=%2A%2A%2A", "after"),
        ("after=YQ%3D%3D", "after"),  # padded
        ("after=YR", "after"),  # not canonical base64url
        ("after=" + "QUFB" * 100, "after"),  # longer than a cursor
        ("after=", "after"),
        ("partner_id=beta-bank", "partner_id"),
        ("access_token=x", "access_token"),
    ],
)
def test_a_bad_query_parameter_is_refused_naming_it(
    journey: Journey, clock: ShiftedClock, spent_jtis: Callable[[], list[str]], query: str, parameter: str
) -> None:
    # GIVEN a valid assertion WHEN the query has a malformed, repeated or unknown parameter
    response = audit(journey, query=query)
    # THEN it is a 400 problem naming the parameter, and the assertion was not spent
    assert_bad_parameter(response, parameter)
    assert spent_jtis() == []


def test_a_refused_query_leaves_the_assertion_usable(journey: Journey, clock: ShiftedClock) -> None:
    # GIVEN an assertion sent once with a malformed month
    assertion = journey.partner.client_assertion(ISSUER)
    assert_bad_parameter(audit(journey, authorization=f"Bearer {assertion}", month="2026-13"), "month")
    # WHEN the partner corrects the query and sends the same assertion
    response = audit(journey, authorization=f"Bearer {assertion}", month=f"{clock.now():%Y-%m}")
    # THEN it is accepted: a refused request changed nothing
    assert response.status_code == 200


def test_credentials_are_checked_before_parameters(journey: Journey, clock: ShiftedClock) -> None:
    # GIVEN no credentials and a malformed month WHEN the request is sent
    response = audit(journey, authorization=None, month="2026-13")
    # THEN the answer is 401 and says nothing about the query
    assert_invalid_token(response, "authorization")


# -- defence in depth ---------------------------------------------------------------------------------


class LeakyAuditLog:
    """The real audit log, plus a record of another partner slipped into every page (a broken index
    or a wrong partition key): the service must not pass it on, and paging must still end."""

    def __init__(self, real: Any, foreign: StoredRecord) -> None:
        self._real = real
        self._foreign = foreign

    def records_of_partner(
        self, partner_id: str, month: str, *, after: str = "", limit: int = 100
    ) -> list[StoredRecord]:
        found = [self._foreign, *self._real.records_of_partner(partner_id, month, after=after, limit=limit)]
        return sorted(
            (record for record in found if record.sort_key > after), key=lambda record: record.sort_key
        )[:limit]


def test_a_foreign_record_returned_by_the_store_is_never_shown(
    journey: Journey, clock: ShiftedClock, second_partner: TestPartner, audit_table: Callable[[], Items]
) -> None:
    # GIVEN a store that, wrongly, hands the first partner a record of the second partner's flow
    completed_flow(journey_of(journey, second_partner, "beta-state-1"), "pensioner")
    completed_flow(journey)
    items = audit_table()
    beta_item = next(
        item for item in items if json.loads(item["document"]["S"])["requester_id"] == "beta-bank"
    )
    foreign = StoredRecord(
        key=f"{beta_item['pk']['S']}|{beta_item['sk']['S']}",
        sort_key=beta_item["sk"]["S"],
        document=beta_item["document"]["S"],
    )
    built = container.get_container()
    service = PartnerAuditService(
        partners=built.partners,
        log=LeakyAuditLog(built.audit_log, foreign),
        replay=built.state_store,
        clock=clock,
        issuer=ISSUER,
    )
    # WHEN the first partner pages through its records two at a time
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(20):
        params = {"limit": ["2"], **({"after": [cursor]} if cursor else {})}
        page = service.page(authorization=f"Bearer {journey.partner.client_assertion(ISSUER)}", params=params)
        seen.extend(record.record_id for record in page.records)
        cursor = page.next
        if cursor is None:
            break
    # THEN it sees all of its own records and never the foreign one, and paging ends
    assert cursor is None
    assert seen == record_ids_of(items, "acme-bank")
    assert json.loads(foreign.document)["record_id"] not in seen

"""Partner documents: what a registration may and may not contain. Each refusal names the field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import OctKey, RSAKey

from chalicelib.domain.errors import InvalidPartnerDocument
from chalicelib.domain.partners import is_public_address, parse_partner_document
from tests.conftest import load_demo_partner, public_jwk

Document = dict[str, Any]


def refusal(document: Document, *, allow_loopback: bool = False) -> InvalidPartnerDocument:
    with pytest.raises(InvalidPartnerDocument) as caught:
        parse_partner_document(document, allow_loopback=allow_loopback)
    return caught.value


@pytest.mark.parametrize("name", ["demo-bank", "demo-health"])
def test_demo_partners_are_valid_in_local_stage(name: str) -> None:
    # GIVEN a committed demo partner  WHEN it is parsed for the local stage
    partner = parse_partner_document(load_demo_partner(name), allow_loopback=True)
    # THEN it is accepted as written
    assert partner.id == name
    assert partner.jwks.signing_keys()
    assert partner.jwks.encryption_keys()


def test_demo_partners_loopback_redirects_are_refused_outside_local_and_test() -> None:
    error = refusal(load_demo_partner("demo-bank"), allow_loopback=False)
    assert any(line.startswith("redirect_uris: ") and "local and test" in line for line in error.errors)


def test_a_valid_production_document_round_trips(partner_document: Callable[..., Document]) -> None:
    partner = parse_partner_document(partner_document(), allow_loopback=False)
    again = parse_partner_document(partner.model_dump(mode="json"), allow_loopback=False)
    assert again == partner
    assert partner.model_dump(mode="json")["purposes"][0]["data_life"] == "PT10M"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://bank.example/callback", "must use https"),
        ("https://bank.example/callback#frag", "fragment"),
        ("https://user:pw@bank.example/callback", "user information"),
        ("https://*.bank.example/callback", "exact host"),
        ("https://bänk.example/callback", "ASCII"),
        ("https://bank.example/call back", "ASCII"),
        ("https://bank.example\n/callback", "ASCII"),
        ("bank-app://callback", "must use https"),
        ("/callback", "exact host"),
        ("https://bank.example:99999/callback", "invalid port"),
        ("http://localhost:8030/callback", "local and test"),
    ],
)
def test_loose_redirect_uris_are_refused(
    partner_document: Callable[..., Document], uri: str, reason: str
) -> None:
    error = refusal(partner_document(redirect_uris=[uri]))
    assert error.check == "redirect_uris"
    assert reason in error.detail


@pytest.mark.parametrize("uri", ["http://localhost:8030/cb", "http://127.0.0.1:8030/cb"])
def test_loopback_http_redirects_are_allowed_in_local_and_test(
    partner_document: Callable[..., Document], uri: str
) -> None:
    partner = parse_partner_document(partner_document(redirect_uris=[uri]), allow_loopback=True)
    assert partner.redirect_uris == (uri,)


def test_other_http_hosts_are_refused_even_in_local(partner_document: Callable[..., Document]) -> None:
    error = refusal(partner_document(redirect_uris=["http://192.168.1.10/cb"]), allow_loopback=True)
    assert "must use https" in error.detail


def test_webhook_must_be_https(partner_document: Callable[..., Document]) -> None:
    error = refusal(partner_document(webhook_url="http://bank.example/hook"))
    assert error.check == "webhook_url"


@pytest.mark.parametrize(
    "url",
    ["https://169.254.169.254/x", "https://[fd00::1]/x", "https://127.1/x", "https://svc.internal/x"],
)
def test_a_webhook_on_a_private_host_is_refused_except_in_local_and_test(
    partner_document: Callable[..., Document], url: str
) -> None:
    # the relay calls the webhook itself (SSRF); redirect URIs are followed by browsers only
    error = refusal(partner_document(webhook_url=url))
    assert (error.check, "must reach the public internet" in error.detail) == ("webhook_url", True)
    assert parse_partner_document(partner_document(webhook_url=url), allow_loopback=True).webhook_url == url
    private_redirect = partner_document(redirect_uris=[url.replace("/x", "/cb")])
    assert parse_partner_document(private_redirect, allow_loopback=False).redirect_uris


# Every IPv6 form that carries an IPv4 address, around the metadata service and around a public
# address (8.8.8.8): judged by the IPv4 address inside, never by the IPv6 prefix alone.
EMBEDDED_IPV4_FORMS = {
    "ipv4-mapped (RFC 4291)": ("::ffff:a9fe:a9fe", "::ffff:808:808"),
    "ipv4-translated (RFC 2765)": ("::ffff:0:a9fe:a9fe", "::ffff:0:808:808"),
    "ipv4-compatible (RFC 4291)": ("::a9fe:a9fe", "::808:808"),
    "nat64 well-known prefix (RFC 6052)": ("64:ff9b::a9fe:a9fe", "64:ff9b::808:808"),
    "6to4 (RFC 3056)": ("2002:a9fe:a9fe::1", "2002:808:808::1"),
    "isatap (RFC 5214)": ("2600:1f18::5efe:a9fe:a9fe", "2600:1f18::5efe:808:808"),
    "isatap, u bit set (RFC 5214)": ("2600:1f18::200:5efe:a9fe:a9fe", "2600:1f18::200:5efe:808:808"),
}


@pytest.mark.parametrize(("wrapped", "public"), EMBEDDED_IPV4_FORMS.values(), ids=list(EMBEDDED_IPV4_FORMS))
def test_an_ipv4_address_inside_ipv6_is_judged_as_that_address(wrapped: str, public: str) -> None:
    assert is_public_address(wrapped) is False
    assert is_public_address(public) is True


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b:1::a9fe:a9fe",  # RFC 8215 local-use NAT64, IPv4 at the /96 position
        "64:ff9b:1:a9fe:a9:fe00::",  # ... at the /48 position (RFC 6052 section 2.2)
        "64:ff9b:1::808:808",  # the block is not globally reachable, whatever it carries
        "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254 XOR'd with ones
        "2001:0:a9fe:a9fe:8000:63bf:f7f7:f7f7",  # Teredo through a server at 169.254.169.254
    ],
)
def test_local_use_nat64_and_teredo_addresses_are_not_public(address: str) -> None:
    assert is_public_address(address) is False


def test_repeated_redirect_uris_are_refused(partner_document: Callable[..., Document]) -> None:
    error = refusal(partner_document(redirect_uris=["https://a.example/cb", "https://a.example/cb"]))
    assert "must not repeat" in error.detail


def with_keys(document: Document, *keys: dict[str, Any]) -> Document:
    document = copy.deepcopy(document)
    document["jwks"] = {"keys": list(keys)}
    return document


SIG = ("sig", "ES256", "s1")
ENC = ("enc", "ECDH-ES+A256KW", "e1")


def test_private_key_material_is_refused(partner_document: Callable[..., Document]) -> None:
    from joserfc.jwk import ECKey

    private = dict(ECKey.generate_key("P-256").as_dict(private=True))
    private.update({"kid": "s1", "use": "sig", "alg": "ES256"})
    error = refusal(with_keys(partner_document(), private, public_jwk(*ENC)))
    assert error.check == "jwks.keys[0]"
    assert "private key material (d)" in error.detail


def test_symmetric_keys_are_refused(partner_document: Callable[..., Document]) -> None:
    oct_key = dict(OctKey.generate_key(256).as_dict())
    oct_key.update({"kid": "h1", "use": "sig", "alg": "HS256"})
    error = refusal(with_keys(partner_document(), oct_key, public_jwk(*ENC)))
    assert error.check.startswith("jwks.keys[0]")


@pytest.mark.parametrize("alg", ["RS256", "ES384", "none", "HS256", "ES256K"])
def test_signing_algorithms_outside_fapi_are_refused(
    partner_document: Callable[..., Document], alg: str
) -> None:
    error = refusal(with_keys(partner_document(), public_jwk("sig", alg, "s1"), public_jwk(*ENC)))
    assert f"alg {alg!r} is not allowed" in error.detail


def test_encryption_key_must_be_ecdh_es_a256kw(partner_document: Callable[..., Document]) -> None:
    error = refusal(with_keys(partner_document(), public_jwk(*SIG), public_jwk("enc", "RSA-OAEP-256", "e1")))
    assert error.check == "jwks.keys[1]"


def test_curve_must_match_algorithm(partner_document: Callable[..., Document]) -> None:
    from joserfc.jwk import ECKey

    p384 = dict(ECKey.generate_key("P-384").as_dict(private=False))
    p384.update({"kid": "s1", "use": "sig", "alg": "ES256"})
    error = refusal(with_keys(partner_document(), p384, public_jwk(*ENC)))
    assert "needs kty=EC and crv=P-256" in error.detail


def test_a_point_off_the_curve_is_refused(partner_document: Callable[..., Document]) -> None:
    broken = public_jwk(*SIG)
    broken["y"] = broken["x"]
    error = refusal(with_keys(partner_document(), broken, public_jwk(*ENC)))
    assert "not a valid EC public key" in error.detail


@pytest.mark.filterwarnings("ignore:Key size should be")
def test_short_rsa_keys_are_refused(partner_document: Callable[..., Document]) -> None:
    weak = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())
    jwk = dict(weak.as_dict(private=False))
    jwk.update({"kid": "s1", "use": "sig", "alg": "PS256"})
    error = refusal(with_keys(partner_document(), jwk, public_jwk(*ENC)))
    assert "1024 bits is too short" in error.detail


def test_a_2048_bit_ps256_key_is_accepted(partner_document: Callable[..., Document]) -> None:
    key = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    jwk = dict(key.as_dict(private=False))
    jwk.update({"kid": "s1", "use": "sig", "alg": "PS256"})
    partner = parse_partner_document(
        with_keys(partner_document(), jwk, public_jwk(*ENC)), allow_loopback=False
    )
    assert partner.jwks.signing_keys()[0].alg == "PS256"


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ((SIG,), "at least one encryption key"),
        ((ENC,), "at least one signing key"),
        ((SIG, ("enc", "ECDH-ES+A256KW", "s1")), "kid values must be unique"),
    ],
)
def test_jwks_needs_one_signing_and_one_encryption_key_with_unique_kids(
    partner_document: Callable[..., Document], keys: tuple[tuple[str, str, str], ...], reason: str
) -> None:
    error = refusal(with_keys(partner_document(), *(public_jwk(*key) for key in keys)))
    assert error.check == "jwks"
    assert reason in error.detail


def test_key_url_headers_are_refused(partner_document: Callable[..., Document]) -> None:
    key = public_jwk(*SIG)
    key["x5u"] = "https://attacker.example/cert.pem"
    error = refusal(with_keys(partner_document(), key, public_jwk(*ENC)))
    assert error.check == "jwks.keys[0].x5u"


def purpose(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "loan-screening",
        "titles": {"ja": "住宅ローンの審査", "en": "Loan screening"},
        "dataset": "local_tax",
        "fields": ["fiscal_year", "total_income"],
        "data_life": "PT10M",
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("overrides", "check", "reason"),
    [
        ({"fields": ["vaccine"]}, "purposes[0]", "fields not in dataset local_tax: vaccine"),
        ({"fields": ["total_income", "total_income"]}, "purposes[0]", "must not repeat"),
        ({"fields": [], "derived_claims": {}}, "purposes[0]", "releases nothing"),
        ({"derived_claims": {"is_rich": 1}}, "purposes[0]", "'is_rich' is not defined"),
        (
            {
                "dataset": "vaccination",
                "fields": ["vaccine"],
                "derived_claims": {"annual_income_at_least": 1},
            },
            "purposes[0]",
            "not defined for dataset vaccination",
        ),
        ({"data_life": "PT30S"}, "purposes[0].data_life", "between 1 minute"),
        ({"data_life": "PT25H"}, "purposes[0].data_life", "between 1 minute"),
        ({"dataset": "national_tax"}, "purposes[0].dataset", "'local_tax' or 'vaccination'"),
        ({"id": "Loan Screening"}, "purposes[0].id", "pattern"),
        ({"titles": {"ja": "", "en": "x"}}, "purposes[0].titles.ja", "at least 1 character"),
    ],
)
def test_purposes_release_only_known_fields_for_a_bounded_time(
    partner_document: Callable[..., Document], overrides: dict[str, Any], check: str, reason: str
) -> None:
    error = refusal(partner_document(purposes=[purpose(**overrides)]))
    assert error.check == check
    assert reason in error.detail


def test_derived_claim_only_purpose_is_valid(partner_document: Callable[..., Document]) -> None:
    document = partner_document(
        purposes=[purpose(fields=[], derived_claims={"annual_income_at_least": 4_000_000})]
    )
    partner = parse_partner_document(document, allow_loopback=False)
    assert partner.purposes[0].derived_claims == {"annual_income_at_least": 4_000_000}


def test_purpose_ids_must_be_unique(partner_document: Callable[..., Document]) -> None:
    error = refusal(partner_document(purposes=[purpose(), purpose()]))
    assert "purpose ids must be unique" in error.detail


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        ({"id": "Acme_Bank"}, "id"),
        ({"id": "ab"}, "id"),
        ({"client_secret": "s3cret"}, "client_secret"),
        ({"names": {"ja": "銀行"}}, "names.en"),
        ({"enabled": "maybe"}, "enabled"),
        ({"redirect_uris": []}, "redirect_uris"),
        ({"purposes": []}, "purposes"),
    ],
)
def test_top_level_mistakes_name_their_field(
    partner_document: Callable[..., Document], overrides: dict[str, Any], check: str
) -> None:
    assert refusal(partner_document(**overrides)).check == check


def test_every_failure_is_reported_at_once(partner_document: Callable[..., Document]) -> None:
    # GIVEN a document with three independent mistakes
    document = partner_document(id="X", webhook_url="http://bank.example/hook", extra_field=1)
    # WHEN it is validated  THEN all three are named, one line each
    error = refusal(document)
    fields = sorted(line.split(":", 1)[0] for line in error.errors)
    assert fields == ["extra_field", "id", "webhook_url"]


def test_display_names_are_trimmed_and_bounded(partner_document: Callable[..., Document]) -> None:
    error = refusal(partner_document(names={"ja": "銀" * 101, "en": "Bank"}))
    assert error.check == "names.ja"

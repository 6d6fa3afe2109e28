"""The authorization side of a flow: FAPI 2.0 toward partners, OAuth client toward Mynaportal.

Steps (docs/flow.md): the partner pushes a request (PAR, RFC 9126) → the resident sees the consent
interstitial and continues or cancels → Mynaportal authorises and calls back (IF001-02) → we
exchange its code (IF001-03) and start the retrieval (IF001-04) → the partner redeems our code
for a DPoP-bound token (RFC 9449) → it may revoke it (RFC 7009).

Rules that shape the code: every check happens before anything is written, so a refused request
changes nothing; single-use values (request_uri, portal state, code, jti) are consumed by
conditional writes in the store, a jti inside the transaction of the step it authorises (PAR,
token) so that the step makes one write; secrets are stored only as fingerprints; error details
name the failed check and never echo a secret.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Literal
from urllib.parse import urlencode

from chalicelib.domain.audit import AuditEvent, audit_record
from chalicelib.domain.datasets import DATASETS
from chalicelib.domain.errors import (
    ConcurrentUpdate,
    CsrfFailure,
    DependencyUnavailable,
    PageError,
    PartnerDisabled,
    PartnerNotFound,
    RelayError,
)
from chalicelib.domain.flow import (
    TRANSITIONS,
    BrowserBindingMismatch,
    Flow,
    FlowStatus,
    PortalProcessRef,
    fingerprint,
    flow_id_of,
    flow_secret,
    new_flow_id,
    new_pseudonym,
    new_secret,
)
from chalicelib.domain.flow_store import FlowStore
from chalicelib.domain.oauth.client_assertion import (
    CLIENT_ASSERTION_TYPE,
    parse_unverified_client_id,
    verify_client_assertion,
)
from chalicelib.domain.oauth.dpop import MAX_AGE, MAX_FUTURE, DpopProof, verify_dpop_proof
from chalicelib.domain.oauth.errors import (
    InvalidClient,
    InvalidDpopProof,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    RequestNotSupported,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from chalicelib.domain.oauth.parameters import single_values, ui_language
from chalicelib.domain.oauth.pkce import validate_challenge, verify_code_verifier
from chalicelib.domain.oauth.ports import ReplayStore
from chalicelib.domain.oauth.replay import ReplayEntry, spend
from chalicelib.domain.partners import Partner, Purpose
from chalicelib.domain.portal import (
    PortalAuthorizationFailed,
    PortalError,
    PortalGateway,
    PortalRejected,
    PortalUnavailable,
)
from chalicelib.domain.ports import Clock, Envelope
from chalicelib.domain.registry import PartnerRegistry

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
SCOPES: tuple[str, ...] = tuple(DATASETS)
# How long after the resident's window closes (the request_uri, the portal state) the scheduled run
# ends a flow as abandoned: longer than any request that began inside the window may take (API
# Gateway stops a request after 29 s; the function's own timeout is 60 s).
ABANDON_GRACE = timedelta(minutes=2)
JST = timezone(timedelta(hours=9), "JST")
# RFC 9449 section 10 / RFC 7638 section 3: dpop_jkt is the base64url (unpadded) SHA-256 thumbprint.
_JKT = re.compile(r"[A-Za-z0-9_-]{43}")
# A token request or a revocation re-reads its flow when a scheduled run moved it on between read
# and write; a poll takes seconds, so a third collision in a row means something else is wrong.
WRITE_ATTEMPTS = 3

# Parameters each endpoint reads. Any other is ignored (RFC 6749 sections 3.1 and 3.2, RFC 9126
# section 2.1): its name is logged by the HTTP layer, never its value. Repeats are refused whether
# known or not (RFC 6749 section 3.1), and the HTTP layer bounds how many parameters a body may hold.
PAR_PARAMETERS = frozenset(
    {
        "response_type",
        "response_mode",
        "ui_locales",
        "client_id",
        "redirect_uri",
        "state",
        "code_challenge",
        "code_challenge_method",
        "scope",
        "purpose",
        "client_assertion_type",
        "client_assertion",
        "dpop_jkt",  # RFC 9449 section 10
    }
)
TOKEN_PARAMETERS = frozenset(
    {
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "client_id",
        "client_assertion_type",
        "client_assertion",
    }
)
REVOKE_PARAMETERS = frozenset(
    {"token", "token_type_hint", "client_id", "client_assertion_type", "client_assertion"}
)
# Recognised at PAR and refused there, because ignoring them would silently change what the client
# asked for: a request object (JAR, RFC 9101: we do not support it, request_parameter_supported is
# false), a request_uri (RFC 9126 section 2.1: it MUST NOT be provided), a client secret (RFC 6749
# section 2.3: one authentication method per request, and ours is private_key_jwt only).
REFUSED_AT_PAR: dict[str, str] = {
    "request": "request objects (JAR) are not supported; send the parameters in the form",
    "request_uri": "must not be sent to the PAR endpoint (RFC 9126 section 2.1)",
    "client_secret": "only private_key_jwt client authentication is supported",
}

PortalRefusal = Literal["cancelled", "certificate_expired", "card_locked", "other"]

# What the partner is told when the portal step ends badly (RFC 6749 section 4.1.2.1 codes).
PARTNER_ERRORS: dict[str, tuple[str, str]] = {
    "cancelled": ("access_denied", "the resident cancelled at Mynaportal"),
    "certificate_expired": ("access_denied", "the resident's card certificate has expired"),
    "card_locked": ("access_denied", "the resident's card is locked"),
    "other": ("server_error", "Mynaportal refused the authorization"),
    "unavailable": ("temporarily_unavailable", "Mynaportal is unavailable; try again later"),
    "failed": ("server_error", "the retrieval could not be started"),
    "disabled": ("access_denied", "the client was disabled by the operator"),
}


@dataclass(frozen=True)
class AuthorizationConfig:
    issuer: str
    par_endpoint: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str
    portal_authorize_url: str
    portal_callback_url: str
    portal_services: Mapping[str, str]
    portal_login_type: str
    request_uri_lifetime: timedelta
    code_lifetime: timedelta
    portal_state_lifetime: timedelta
    retrieval_deadline: timedelta
    # the IF001-04 inquiry date: None for Japan's date at the callback, or a date pinned per stage
    # (integrations pin it for the portal's test environment, docs/mynaportal.md)
    portal_inquiry_date: date | None = None
    # when the scheduled poll first looks at a retrieval: the notice, not the poll, normally
    # fetches the result [O]; the poll is the fallback for a notice that never comes
    first_poll_after: timedelta = timedelta(0)


@dataclass(frozen=True)
class PushedRequest:
    request_uri: str
    expires_in: int


@dataclass(frozen=True)
class ConsentView:
    flow: Flow
    partner: Partner
    purpose: Purpose
    request_uri: str
    csrf_token: str


@dataclass(frozen=True)
class RedirectTo:
    url: str
    # Set by the decision that sends the resident to the portal: the value of the cookie that
    # binds the portal's callback to this browser (the HTTP layer sets it; never logged).
    browser_binding: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    delivery_id: str  # the flow id: what webhooks name, and what pickup may be asked for

    def __repr__(self) -> str:
        return f"IssuedToken(expires_in={self.expires_in}, scope={self.scope!r})"


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise InvalidRequest("missing", check=name)
    return value


def _with_query(url: str, query: Mapping[str, str]) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(query)


class AuthorizationService:
    def __init__(
        self,
        *,
        config: AuthorizationConfig,
        partners: PartnerRegistry,
        flows: FlowStore,
        replay: ReplayStore,
        portal: PortalGateway,
        envelope: Envelope,
        clock: Clock,
        classify_portal_error: Callable[[str | None, str | None], PortalRefusal | None],
        classify_portal_state: Callable[[str], PortalRefusal | None],
    ) -> None:
        self.config = config
        self._partners = partners
        self._flows = flows
        self._replay = replay
        self._portal = portal
        self._envelope = envelope
        self._clock = clock
        # (error, code) -> the refusal a callback with a usable state reports, None for a code
        self._classify = classify_portal_error
        # state -> the refusal of a state the portal replaced by its error text, else None
        self._classify_state = classify_portal_state

    # -- client authentication (RFC 7523 private_key_jwt) --------------------------------------------

    def _authenticate(self, params: Mapping[str, str]) -> tuple[Partner, str, datetime]:
        """The partner behind a valid client assertion, with the assertion's jti and expiry; the
        jti is remembered later, once every other check has passed."""
        if params.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise InvalidClient(f"must be {CLIENT_ASSERTION_TYPE}", check="client_assertion_type")
        assertion = params.get("client_assertion", "")
        if not assertion:  # RFC 6749 5.2: no client authentication included
            raise InvalidClient("missing", check="client_assertion")
        client_id = params.get("client_id") or parse_unverified_client_id(assertion)
        if not client_id:
            raise InvalidClient("no client_id and no iss in the assertion", check="client_id")
        try:
            partner = self._partners.get_enabled(client_id)
        except (PartnerNotFound, PartnerDisabled):
            raise InvalidClient("unknown or disabled client", check="client_id") from None
        verified = verify_client_assertion(
            assertion,
            client_id=partner.id,
            jwks=partner.jwks,
            # FAPI 2.0 Security Profile (final) 5.3.2.1 item 8: the issuer, as a string, only, at
            # every endpoint (not RFC 9126 section 2's older list of endpoint URLs).
            issuer=self.config.issuer,
            now=self._clock.now(),
        )
        return partner, verified.jti, verified.expires_at

    def _assertion_jti(self, partner: Partner, jti: str, until: datetime) -> ReplayEntry:
        """The assertion's jti, to be remembered by the step's write (or ``spend``)."""
        return ReplayEntry(
            f"ca:{partner.id}",
            fingerprint(jti),
            until=until,
            at=self._clock.now(),
            refusal=InvalidClient("client assertion jti already used", check="client_assertion.jti"),
        )

    # -- PAR (RFC 9126) -----------------------------------------------------------------------------

    def push(self, form: Mapping[str, list[str]], *, dpop_proof: str | None = None) -> PushedRequest:
        """``dpop_proof`` is the request's ``DPoP`` header, None when it carried none."""
        params = single_values(form, PAR_PARAMETERS)
        for name, reason in REFUSED_AT_PAR.items():
            if form.get(name, [""])[0]:  # RFC 6749 section 3.1: an empty parameter is an absent one
                error = RequestNotSupported if name == "request" else InvalidRequest
                raise error(reason, check=name)
        partner, jti, jti_until = self._authenticate(params)
        dpop_jkt, proof_jti = self._par_dpop_binding(params, dpop_proof)
        if params.get("response_type") != "code":
            raise InvalidRequest("only response_type=code is supported", check="response_type")
        if params.get("response_mode", "query") not in ("", "query"):
            # response_modes_supported: a code sent another way than the client asked is refused, not sent
            raise InvalidRequest("only response_mode=query is supported", check="response_mode")
        redirect_uri = _required(params, "redirect_uri")
        if redirect_uri not in partner.redirect_uris:  # exact string comparison (RFC 9700 2.1)
            raise InvalidRequest("not a registered redirect URI of this client", check="redirect_uri")
        state = _required(params, "state")
        if len(state) > 512 or not all(0x20 <= ord(ch) <= 0x7E for ch in state):
            raise InvalidRequest("must be 1-512 printable ASCII characters", check="state")
        challenge = validate_challenge(params.get("code_challenge"), params.get("code_challenge_method"))
        purpose = partner.purpose(_required(params, "purpose"))
        if purpose is None:
            raise InvalidScope("not a registered purpose of this client", check="purpose")
        scope = _required(params, "scope")
        if scope != purpose.dataset:
            raise InvalidScope(f"the purpose {purpose.id} covers scope {purpose.dataset} only", check="scope")
        portal_client_id = self.config.portal_services.get(purpose.dataset)
        if portal_client_id is None:
            raise InvalidScope(f"{purpose.dataset} is not available from this service", check="scope")
        now = self._clock.now()
        assertion_jti = self._assertion_jti(partner, jti, jti_until)
        lifetime = self.config.request_uri_lifetime
        flow_id = new_flow_id()
        request_uri = REQUEST_URI_PREFIX + flow_secret(flow_id)
        flow = Flow(
            flow_id=flow_id,
            partner_id=partner.id,
            partner_name=partner.names.ja,
            # We never learn who the resident is; the pseudonym links this flow's records only.
            resident_pseudonym=new_pseudonym(),
            purpose_id=purpose.id,
            dataset=purpose.dataset,
            scope=scope,
            redirect_uri=redirect_uri,
            partner_state=state,
            code_challenge=challenge,
            status=FlowStatus.CREATED,
            version=1,
            created_at=now,
            updated_at=now,
            expires_at=now
            + lifetime
            + self.config.portal_state_lifetime
            + self.config.retrieval_deadline
            + purpose.data_life
            + timedelta(hours=1),
            portal_client_id=portal_client_id,
            ui_locale=ui_language(params.get("ui_locales")),
            # swept as abandoned if the resident never decides (the request_uri is dead by then)
            next_due_at=now + lifetime + ABANDON_GRACE,
            dpop_jkt=dpop_jkt,  # the key the code is bound to (RFC 9449 section 10), if any
            request_uri_hash=fingerprint(request_uri),
            request_uri_expires_at=now + lifetime,
        )
        self._flows.create(
            flow,
            audits=[audit_record(flow, AuditEvent.REQUEST_PUSHED, at=now, outcome="pushed")],
            # a replayed assertion, then a replayed proof, cancels the flow's creation
            replays=[assertion_jti, *proof_jti],
        )
        return PushedRequest(request_uri=request_uri, expires_in=int(lifetime.total_seconds()))

    def _par_dpop_binding(
        self, params: Mapping[str, str], dpop_proof: str | None
    ) -> tuple[str | None, list[ReplayEntry]]:
        """RFC 9449 section 10 and 10.1: the key a pushed request binds its code to (None: unbound),
        with the proof's jti to spend in the flow's creation.

        A ``DPoP`` header is verified like any proof (typ, alg, signature, htm POST, htu the PAR
        endpoint, iat window; its jti is single use) and binds the code to its key's RFC 7638
        thumbprint; ``dpop_jkt`` in the body does the same; when both are sent they must name the
        same key."""
        dpop_jkt = params.get("dpop_jkt")
        if dpop_jkt is not None and not _JKT.fullmatch(dpop_jkt):
            raise InvalidRequest(
                "must be the base64url SHA-256 JWK thumbprint (RFC 7638) of the DPoP key", check="dpop_jkt"
            )
        if dpop_proof is None:
            return dpop_jkt, []
        now = self._clock.now()
        proof = verify_dpop_proof(dpop_proof, method="POST", url=self.config.par_endpoint, now=now)
        if dpop_jkt is not None and not hmac.compare_digest(dpop_jkt, proof.jkt):
            raise InvalidDpopProof("the proof key is not the key dpop_jkt names", check="dpop.jkt")
        return proof.jkt, [self._proof_jti(proof, now)]

    @staticmethod
    def _proof_jti(proof: DpopProof, now: datetime) -> ReplayEntry:
        """A DPoP proof's jti, to be remembered by the step's write (RFC 9449 section 11.1)."""
        return ReplayEntry(
            f"dpop:{proof.jkt}",
            fingerprint(proof.jti),
            until=proof.issued_at + MAX_AGE + MAX_FUTURE,
            at=now,
            refusal=InvalidDpopProof("DPoP proof jti already used", check="dpop.jti"),
        )

    # -- the consent interstitial ---------------------------------------------------------------------

    def _pushed_flow(self, request_uri: str) -> Flow:
        if not request_uri.startswith(REQUEST_URI_PREFIX) or len(request_uri) > 200:
            raise PageError("the request_uri is malformed", check="request_uri")
        now = self._clock.now()
        flow_id = flow_id_of(request_uri.removeprefix(REQUEST_URI_PREFIX))
        flow = self._flows.get(flow_id, now=now) if flow_id else None
        if (
            flow is None
            or flow.status is not FlowStatus.CREATED
            or flow.request_uri_hash is None
            or not secrets.compare_digest(fingerprint(request_uri), flow.request_uri_hash)
            or flow.request_uri_expires_at is None
            or flow.request_uri_expires_at <= now
        ):
            raise PageError("the request_uri is unknown, expired or already used", check="request_uri")
        return flow

    def consent_view(self, client_id: str, request_uri: str, *, csrf_cookie: str = "") -> ConsentView:
        """The interstitial's content, recorded as shown once per flow. ``csrf_cookie``: the token
        this browser was given by an earlier load of the page; if it is the flow's, it is kept and
        nothing is written (a reload, a language switch). Otherwise a new token replaces the flow's
        (the fingerprint is stored: the decision checks form, cookie and flow), and the first such
        write, conditional on the version read, also records "shown"."""
        try:
            partner = self._partners.get_enabled(client_id)
        except (PartnerNotFound, PartnerDisabled):
            raise PageError("unknown or disabled client", check="client_id") from None
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            flow = self._pushed_flow(request_uri)
            if flow.partner_id != partner.id:
                raise PageError("the request_uri was pushed by another client", check="client_id")
            purpose = partner.purpose(flow.purpose_id)
            if purpose is None:
                raise PageError("the purpose is no longer registered", check="purpose")
            if (
                csrf_cookie
                and flow.csrf_hash is not None
                and secrets.compare_digest(fingerprint(csrf_cookie[:200]), flow.csrf_hash)
            ):
                csrf_token = csrf_cookie
            else:
                csrf_token = new_secret()
                now = self._clock.now()
                # the flow's token is set by this method alone: none yet means never shown
                first_show = flow.csrf_hash is None
                shown = [audit_record(flow, AuditEvent.CONSENT_SHOWN, at=now, outcome="shown")]
                try:
                    self._flows.update(
                        flow,
                        flow.updated(now=now, csrf_hash=fingerprint(csrf_token)),
                        audits=shown if first_show else [],
                    )
                except ConcurrentUpdate:
                    if attempt == WRITE_ATTEMPTS:
                        raise
                    continue  # another load (or the decision) wrote first: read the flow again
            return ConsentView(
                flow=flow, partner=partner, purpose=purpose, request_uri=request_uri, csrf_token=csrf_token
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def decide(self, request_uri: str, *, csrf_form: str, csrf_cookie: str, proceed: bool) -> RedirectTo:
        flow = self._pushed_flow(request_uri)
        if (
            not csrf_form
            or not csrf_cookie
            # as bytes: compare_digest refuses str with non-ASCII characters (TypeError, a 500)
            or not secrets.compare_digest(csrf_form.encode(), csrf_cookie.encode())
            or flow.csrf_hash is None
            or not secrets.compare_digest(fingerprint(csrf_form), flow.csrf_hash)
        ):
            raise CsrfFailure("the form's CSRF token does not match; reload the page", check="csrf_token")
        if proceed and not self._partner_enabled(flow.partner_id):
            # disabled while the resident had the page open: nobody goes to the portal for it
            raise PageError("unknown or disabled client", check="client_id")
        now = self._clock.now()
        try:
            if not proceed:
                after = flow.moved_to(FlowStatus.CANCELLED, now=now, failure_reason="resident.cancelled")
                # leaving ``created`` spends the request_uri: the write is conditional on the
                # version read, so of two decisions exactly one is taken
                self._flows.update(
                    flow,
                    after,
                    audits=[audit_record(flow, AuditEvent.CANCELLED, at=now, outcome="resident.cancelled")],
                )
                return self._to_partner(flow, error=("access_denied", "the resident cancelled"))
            portal_state = flow_secret(flow.flow_id)
            # shaped like every secret of the flow (``<flow id>.<random>``): when the portal sends
            # the resident back with its error text in place of the state, the cookie alone names
            # the flow (``_refused_without_state``)
            browser_binding = flow_secret(flow.flow_id)
            # swept as abandoned if the resident never comes back: after the portal state is dead
            # and long after a callback that began just in time could still be writing
            after = flow.moved_to(
                FlowStatus.AT_PORTAL,
                now=now,
                next_due_at=now + self.config.portal_state_lifetime + ABANDON_GRACE,
                portal_state_hash=fingerprint(portal_state),
                portal_state_expires_at=now + self.config.portal_state_lifetime,
                browser_binding_hash=fingerprint(browser_binding),
            )
            self._flows.update(
                flow,
                after,
                audits=[audit_record(flow, AuditEvent.CONTINUED, at=now, outcome="to_portal")],
            )
        except ConcurrentUpdate:
            raise PageError("the request_uri was already used", check="request_uri") from None
        query = {
            "response_type": "code",
            "client_id": flow.portal_client_id,
            "redirect_uri": self.config.portal_callback_url,
            "state": portal_state,
            "login_type": self.config.portal_login_type,
        }
        return RedirectTo(
            _with_query(self.config.portal_authorize_url, query), browser_binding=browser_binding
        )

    def _to_partner(
        self, flow: Flow, *, code: str | None = None, error: tuple[str, str] | None = None
    ) -> RedirectTo:
        """RFC 9207: the response carries iss; only code (or error), state and iss."""
        query: dict[str, str] = {}
        if code is not None:
            query["code"] = code
        if error is not None:
            query["error"], query["error_description"] = error
        query["state"] = flow.partner_state
        query["iss"] = self.config.issuer
        return RedirectTo(_with_query(flow.redirect_uri, query))

    # -- the portal callback (IF001-02) ---------------------------------------------------------------

    def portal_callback(self, params: Mapping[str, list[str]], *, browser_binding: str = "") -> RedirectTo:
        """``browser_binding``: the binding cookie the decision set in the resident's browser."""
        states = params.get("state", [])
        if len(states) != 1 or not states[0] or len(states[0]) > 200:
            raise PageError("the callback has no usable state", check="state")
        now = self._clock.now()
        flow_id = flow_id_of(states[0])
        if flow_id is None:
            # Not a state of ours: the portal's error text in its place (observed: "Certificate
            # expired"), or a forgery. Only a recognised text may end a flow, found by the cookie.
            refusal = self._classify_state(states[0])
            if refusal is not None:
                return self._refused_without_state(refusal, browser_binding)
        try:
            flow = (
                self._flows.consume_portal_state(
                    flow_id,
                    portal_state_hash=fingerprint(states[0]),
                    browser_binding_hash=fingerprint(browser_binding[:200]),
                    now=now,
                )
                if flow_id
                else None
            )
        except BrowserBindingMismatch as error:
            raise PageError(str(error.detail), check="browser_binding") from None
        if flow is None:
            raise PageError("the callback's state is unknown, expired or already used", check="state")
        if flow.status is not FlowStatus.AT_PORTAL:
            raise PageError("the flow is not waiting for the portal", check="state")
        errors, codes = params.get("error", []), params.get("code", [])
        refusal = self._classify(
            errors[0][:100] if errors else None, codes[0][:100] if len(codes) == 1 else None
        )
        if refusal is not None:  # an error, or the error word where the code would be
            return self._fail(flow, f"portal.{refusal}", PARTNER_ERRORS[refusal])
        if len(codes) != 1 or not codes[0]:
            return self._fail(flow, "portal.no_code", PARTNER_ERRORS["other"])
        if not self._partner_enabled(flow.partner_id):
            # disabled while the resident was at the portal: the code is never exchanged, so no
            # data is retrieved; the state is spent, so the flow ends here
            return self._fail(flow, "partner.disabled", PARTNER_ERRORS["disabled"])
        try:
            token = self._portal.exchange_code(
                client_id=flow.portal_client_id, code=codes[0], redirect_uri=self.config.portal_callback_url
            )
            process = self._portal.start_request(
                client_id=flow.portal_client_id,
                access_token=token.access_token,
                inquiry_date=self.config.portal_inquiry_date or now.astimezone(JST).date(),
                now=now,
            )
        except PortalUnavailable:
            return self._fail(flow, "portal.unavailable", PARTNER_ERRORS["unavailable"])
        except PortalAuthorizationFailed:
            return self._fail(flow, "portal.token_refused", PARTNER_ERRORS["other"])
        except PortalRejected:
            return self._fail(flow, "portal.request_rejected", PARTNER_ERRORS["failed"])
        except (PortalError, ValueError):  # ValueError: an answer we refuse to use (e.g. an unsafe token)
            return self._fail(flow, "portal.protocol_error", PARTNER_ERRORS["failed"])
        try:
            ciphertext = self._envelope.encrypt(
                token.access_token.encode(), context={"flow_id": flow.flow_id}
            )
        except RelayError:
            return self._fail(flow, "kms.unavailable", PARTNER_ERRORS["unavailable"])
        code = flow_secret(flow.flow_id)
        after = flow.moved_to(
            FlowStatus.RETRIEVING,
            now=now,
            portal_process=PortalProcessRef(
                telegram_id=process.telegram_id, process_id=process.process_id, mode=process.mode
            ),
            portal_token_ciphertext=base64.b64encode(ciphertext).decode(),
            retrieval_deadline=now + self.config.retrieval_deadline,
            # the notice fetches the result; the poller, the fallback, looks first after a while
            # and backs off from there while the result is pending
            next_due_at=now + self.config.first_poll_after,
            code_hash=fingerprint(code),
            code_expires_at=now + self.config.code_lifetime,
        )
        try:
            self._flows.start_retrieval(
                flow,
                after,
                process_id=process.process_id,
                audits=[
                    audit_record(flow, AuditEvent.PORTAL_AUTHORISED, at=now, outcome="authorised"),
                    audit_record(flow, AuditEvent.RETRIEVAL_STARTED, at=now, outcome="started"),
                ],
            )
        except DependencyUnavailable:
            # The portal state is spent, so this callback can never come again: fail the flow
            # (if the store takes that write) rather than leave it waiting at the portal.
            return self._fail(flow, "dynamodb.unavailable", PARTNER_ERRORS["unavailable"])
        return self._to_partner(flow, code=code)

    def _partner_enabled(self, partner_id: str) -> bool:
        try:
            self._partners.get_enabled(partner_id)
        except (PartnerNotFound, PartnerDisabled):
            return False
        return True

    def _refused_without_state(self, refusal: PortalRefusal, browser_binding: str) -> RedirectTo:
        """The portal sent the resident back with its error text in place of the state: the flow
        is the one the browser binding cookie names (``<flow id>.<random>``, set at the decision),
        if its fingerprint is the flow's and the flow still waits for the portal with an unspent,
        unexpired state. It can only end the flow as refused, never complete it: a success needs
        the real state. Ended by one write conditional on the version read and on the state not
        being in use by a callback that brought it (``unspent_portal_state``)."""
        now = self._clock.now()
        binding = browser_binding[:200]
        flow_id = flow_id_of(binding) if binding else None
        flow = self._flows.get(flow_id, now=now) if flow_id else None
        if (
            flow is None
            or flow.status is not FlowStatus.AT_PORTAL
            or flow.browser_binding_hash is None
            or not secrets.compare_digest(fingerprint(binding), flow.browser_binding_hash)
            or flow.portal_state_expires_at is None
            or flow.portal_state_expires_at <= now
        ):
            raise PageError(
                "the portal's error came without a state, and this browser is not one waiting for it",
                check="browser_binding",
            )
        try:
            return self._fail(flow, f"portal.{refusal}", PARTNER_ERRORS[refusal], unspent_portal_state=True)
        except ConcurrentUpdate:
            raise PageError("the flow is not waiting for the portal", check="state") from None

    def _fail(
        self, flow: Flow, reason: str, error: tuple[str, str], *, unspent_portal_state: bool = False
    ) -> RedirectTo:
        now = self._clock.now()
        self._flows.update(
            flow,
            flow.moved_to(FlowStatus.FAILED, now=now, failure_reason=reason),
            audits=[audit_record(flow, AuditEvent.PORTAL_FAILED, at=now, outcome=reason)],
            unspent_portal_state=unspent_portal_state,
        )
        return self._to_partner(flow, error=error)

    # -- token (RFC 6749 4.1.3 + RFC 7636 + RFC 9449) ------------------------------------------------

    def redeem(self, form: Mapping[str, list[str]], *, dpop_proof: str | None) -> IssuedToken:
        # The grant type first, before any other parameter and before client authentication: a
        # grant we do not support is unsupported_grant_type whatever else the request carries (a
        # refresh_token grant brings a refresh_token parameter, a missing code...), as conformance
        # suites expect (RFC 6749 section 5.2 orders nothing). It reveals nothing the metadata's
        # grant_types_supported does not publish, and nothing is written.
        grant_types = form.get("grant_type", [])
        if len(grant_types) > 1:
            raise InvalidRequest("parameter repeated", check="grant_type")
        if grant_types != ["authorization_code"]:
            raise UnsupportedGrantType("only authorization_code is supported", check="grant_type")
        params = single_values(form, TOKEN_PARAMETERS)
        partner, jti, jti_until = self._authenticate(params)
        now = self._clock.now()
        proof = verify_dpop_proof(dpop_proof, method="POST", url=self.config.token_endpoint, now=now)
        code = _required(params, "code")
        flow = self._code_flow(code, now=now)
        # The code's owner before its single use (as node oidc-provider orders them): another
        # client presenting a code, used or not, is refused and changes nothing for the owner.
        if flow.partner_id != partner.id:
            raise InvalidGrant("the code was issued to another client", check="client_id")
        if flow.code_redeemed:
            self._revoke_after_code_replay(flow)
            raise InvalidGrant("the code was already used; what it issued is revoked", check="code")
        flow = self._redeemable(flow, partner, params, proof_jkt=proof.jkt)
        # Both jtis are written with the redemption, the assertion's first: a replayed assertion
        # is refused as such, then a replayed proof, then a used code (the order of the checks).
        replays = [
            self._assertion_jti(partner, jti, jti_until),
            self._proof_jti(proof, now),
        ]
        try:
            return self._issue(
                flow, partner, params, code=code, proof_jkt=proof.jkt, now=now, replays=replays
            )
        except (InvalidClient, DependencyUnavailable):
            raise  # the assertion was replayed, or nothing could be written: nothing to spend
        except InvalidDpopProof:
            # A request refused for its proof has still used its (fresh) assertion, as when the
            # assertion was remembered before the proof was checked.
            spend(self._replay, replays[:1])
            raise
        except RelayError:
            # Refused after every check passed (the code used meanwhile, the flow moved on): the
            # transaction wrote nothing, but the assertion and the proof are spent all the same.
            spend(self._replay, replays)
            raise

    def _code_flow(self, code: str, *, now: datetime) -> Flow:
        """The flow a presented code belongs to: its fingerprint must be the flow's code's (a
        made-up code naming a real flow is unknown, and changes nothing), and an unused one must
        be within its lifetime (a used one is still recognised, to revoke what it issued)."""
        flow_id = flow_id_of(code)
        flow = self._flows.get(flow_id, now=now) if flow_id else None
        if (
            flow is None
            or flow.code_hash is None
            or not secrets.compare_digest(fingerprint(code), flow.code_hash)
            or (not flow.code_redeemed and (flow.code_expires_at is None or flow.code_expires_at <= now))
        ):
            raise InvalidGrant("the code is unknown or expired", check="code")
        return flow

    def _issue(
        self,
        flow: Flow,
        partner: Partner,
        params: Mapping[str, str],
        *,
        code: str,
        proof_jkt: str,
        now: datetime,
        replays: list[ReplayEntry],
    ) -> IssuedToken:
        """Redeem the code for a token bound to ``proof_jkt``, with the request's jtis in the same
        transaction; re-read the flow when a scheduled run moved it on in between."""
        partner_purpose = partner.purpose(flow.purpose_id)
        data_life = partner_purpose.data_life if partner_purpose else timedelta(minutes=10)
        access_token = flow_secret(flow.flow_id)
        expires_at = min(flow.expires_at, now + self.config.retrieval_deadline + data_life)
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            # the code is spent by this very write: conditional on the version read, it is taken
            # by exactly one of concurrent redemptions
            after = flow.updated(
                now=now,
                code_redeemed=True,
                access_token_hash=fingerprint(access_token),
                token_expires_at=expires_at,
                dpop_jkt=proof_jkt,
            )
            try:
                self._flows.redeem_code(flow, after, replays=replays)
                break
            except ConcurrentUpdate:
                # Another redemption of this code won (a replay: revoke what it issued), or the
                # scheduled run polled or sealed the flow between our read and our write (the
                # code is still unused): read the flow again and tell which.
                again = self._flows.get(flow.flow_id, now=now)
                if again is not None and again.code_redeemed:
                    self._revoke_after_code_replay(again)
                    raise InvalidGrant(
                        "the code was already used; what it issued is revoked", check="code"
                    ) from None
                if attempt == WRITE_ATTEMPTS:
                    raise
                flow = self._redeemable(again, partner, params, proof_jkt=proof_jkt)
        return IssuedToken(access_token, int((expires_at - now).total_seconds()), flow.scope, flow.flow_id)

    def _redeemable(
        self, flow: Flow | None, partner: Partner, params: Mapping[str, str], *, proof_jkt: str
    ) -> Flow:
        """The flow an unused code points at, once the token request matches what was pushed."""
        if flow is None:
            raise InvalidGrant("the code is unknown or expired", check="code")
        if flow.partner_id != partner.id:
            raise InvalidGrant("the code was issued to another client", check="client_id")
        if params.get("redirect_uri") != flow.redirect_uri:
            raise InvalidGrant("redirect_uri differs from the pushed request", check="redirect_uri")
        verify_code_verifier(params.get("code_verifier"), flow.code_challenge)
        # RFC 9449 section 10 and 10.1: a code pushed with a DPoP proof or dpop_jkt is bound to
        # that key; a proof by any other key cannot redeem it (and leaves it to its owner).
        if flow.dpop_jkt is not None and not hmac.compare_digest(flow.dpop_jkt, proof_jkt):
            raise InvalidDpopProof(
                "the proof key is not the key the pushed request bound the code to", check="dpop.jkt"
            )
        if flow.status not in (FlowStatus.RETRIEVING, FlowStatus.READY):
            raise InvalidGrant(f"the flow is {flow.status.value}", check="code")
        return flow

    def _revoke_after_code_replay(self, flow: Flow) -> None:
        """RFC 6749 4.1.2 / RFC 9700 4.5: a second use of a code revokes what the first issued
        (the token dies with the flow's revocation, or on its own if the flow has ended)."""
        self._revoke_flow(flow, "code.replayed")

    def _revoke_flow(self, flow: Flow, reason: str) -> None:
        """Move the flow to ``revoked`` and delete its sealed payload, re-reading the flow if a
        scheduled run moved it on meanwhile: a revocation must not lose to a poll, or the run
        would go on to seal data for a partner whose token is already gone."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            now = self._clock.now()
            try:
                if FlowStatus.REVOKED not in TRANSITIONS[flow.status]:
                    # an ended flow: only its token, if it still has one, is left to revoke
                    if flow.access_token_hash is not None:
                        self._flows.update(flow, flow.updated(now=now, access_token_hash=None))
                    return
                self._flows.update(
                    flow,
                    flow.moved_to(FlowStatus.REVOKED, now=now, failure_reason=reason, next_due_at=None),
                    audits=[audit_record(flow, AuditEvent.REVOKED, at=now, outcome=reason)],
                    delete_delivery=flow.status is FlowStatus.READY,  # the sealed payload dies with it
                )
                return
            except ConcurrentUpdate:
                again = self._flows.get(flow.flow_id, now=now)
                if again is None or attempt == WRITE_ATTEMPTS:
                    raise
                flow = again

    # -- revocation (RFC 7009) ------------------------------------------------------------------------

    def revoke(self, form: Mapping[str, list[str]]) -> None:
        params = single_values(form, REVOKE_PARAMETERS)
        partner, jti, jti_until = self._authenticate(params)
        token = _required(params, "token")
        # RFC 7009 2.1: token_type_hint may be ignored; only access tokens exist here, so the
        # search covers every token type whatever the hint says.
        now = self._clock.now()
        flow_id = flow_id_of(token)
        flow = self._flows.get(flow_id, now=now) if flow_id else None
        if flow is not None and not flow.holds_token(token, now=now):
            flow = None
        if flow is not None and flow.partner_id != partner.id:
            raise UnauthorizedClient("the token was issued to another client", check="token")
        # No transaction follows every revocation (an unknown token is answered 200 at once): the
        # assertion's jti is remembered on its own.
        spend(self._replay, [self._assertion_jti(partner, jti, jti_until)])
        if flow is None:
            return  # RFC 7009 2.2: an invalid or expired token is answered 200 as well
        self._revoke_flow(flow, "partner.revoked")

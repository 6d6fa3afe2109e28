"""``RelayClient``: a partner's side of the myna-relay flow, written from the protocol alone.

1. ``start``: PKCE (S256), ``state``, a pushed authorization request (RFC 9126) authenticated with
   ``private_key_jwt`` (RFC 7523); gives the URL to send the resident's browser to.
2. ``finish``: checks the redirect back (``iss`` per RFC 9207, ``state``), then redeems the code at
   the token endpoint with the verifier, a fresh client assertion and a DPoP proof (RFC 9449) from a
   key made for this one delivery.
3. ``pick_up``: ``GET /v1/self-info`` with the DPoP-bound token, waiting through ``202``.
4. ``open``: decrypts the JWE with the partner's encryption key, verifies the inner JWS against the
   relay's JWKS and checks ``iss``, ``aud`` and ``exp``.

``verify_webhook`` checks a ``delivery.*`` event; ``revoke`` withdraws a delivery not yet picked up.
Everything comes from ``/.well-known/oauth-authorization-server`` (fetched once).

Witnessing the audit log (docs/partner-audit.md): ``latest_checkpoint`` / ``checkpoint`` fetch a
verified signed tree head; ``consistency`` proves (RFC 9162 section 2.1.4) that a head the partner
kept is a prefix of a newer one, and raises ``InconsistentLog`` on a fork, a rollback or a proof
that does not verify. The kit never trusts a head it has not verified itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeGuard
from urllib.parse import urlencode

import requests
from joserfc import jwe, jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from partner_kit.errors import (
    AuthorizationError,
    CallbackMismatch,
    DeliveryGone,
    DeliveryTimeout,
    InconsistentLog,
    RelayError,
    VerificationError,
)
from partner_kit.keys import CONTENT_ENCRYPTION, ENCRYPTION_ALG, SIGNING_ALG, PartnerKeys
from partner_kit.rfc9162 import HASH_SIZE, verify_consistency

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 60  # the relay accepts at most 120
WEBHOOK_TYPE = "myna-relay-event+jwt"
# Webhook events are signed by the relay's hourly event keys, whose kid starts with this; sealed
# payloads, receipts and checkpoints only by its KMS keys, whose kid never does. Each kind of JWT
# is verified with its own kind of key only (docs/partners.md, "Verifying webhooks").
EVENT_KID_PREFIX = "event-"
SELF_INFO_PATH = "/v1/self-info"
CHECKPOINTS_PATH = "/v1/audit/checkpoints"
CHECKPOINT_TYP = "myna-relay-checkpoint+jwt"
LATEST = "latest"
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")
DEFAULT_RETRY_AFTER_S = 5.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def s256(verifier: str) -> str:
    """The PKCE S256 code challenge of a verifier (RFC 7636 section 4.2)."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def new_code_verifier() -> str:
    """43 characters of the unreserved alphabet from 256 random bits (RFC 7636 section 4.1)."""
    return b64url(secrets.token_bytes(32))


@dataclass(frozen=True)
class PendingAuthorization:
    """What to keep (in the user's session) between ``start`` and ``finish``. JSON-serialisable
    through ``to_dict`` / ``from_dict``; the verifier is a secret, so keep it server-side or in a
    signed (and preferably encrypted) session."""

    state: str
    code_verifier: str
    redirect_uri: str
    dataset: str
    purpose: str
    authorize_url: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingAuthorization:
        names = ("state", "code_verifier", "redirect_uri", "dataset", "purpose", "authorize_url")
        values = {name: data.get(name) for name in names}
        if not all(isinstance(value, str) for value in values.values()):
            raise ValueError("not a PendingAuthorization")
        return cls(**{name: str(value) for name, value in values.items()})


@dataclass(frozen=True)
class Delivery:
    """A DPoP-bound access token for one delivery, and the key it is bound to."""

    access_token: str
    delivery_id: str | None
    dpop_key: ECKey = field(repr=False)
    expires_at: float
    scope: str | None = None

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at


@dataclass(frozen=True)
class SealedDelivery:
    """The ``application/jose`` body of a pickup: a compact JWE, opened with ``RelayClient.open``."""

    compact: str
    delivery_id: str | None = None


class RelayClient:
    """One partner talking to one relay. Thread-safe; create it once and share it."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        keys: PartnerKeys,
        *,
        session: requests.Session | None = None,
        timeout_s: float = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.keys = keys
        self.timeout_s = timeout_s
        self._http = session or requests.Session()
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._jwks: KeySet | None = None

    # discovery -------------------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """The relay's RFC 8414 metadata, fetched on first use; its ``issuer`` must be ours."""
        with self._lock:
            if self._metadata is None:
                url = f"{self.issuer}/.well-known/oauth-authorization-server"
                answer = self._request("GET", url)
                if answer.status_code != 200:
                    raise _error_of(answer, "discovery")
                document = _json_object(answer, "discovery")
                if document.get("issuer") != self.issuer:
                    raise RelayError(f"metadata issuer {document.get('issuer')!r} is not {self.issuer!r}")
                self._metadata = document
            return self._metadata

    def _endpoint(self, name: str) -> str:
        value = self.metadata.get(name)
        if not isinstance(value, str) or not value:
            raise RelayError(f"metadata has no {name}")
        return value

    def service_keys(self, *, refresh: bool = False) -> KeySet:
        """The relay's public signing keys (``jwks_uri``), cached; ``refresh`` fetches them again."""
        if self._jwks is None or refresh:
            answer = self._request("GET", self._endpoint("jwks_uri"))
            if answer.status_code != 200:
                raise _error_of(answer, "jwks")
            try:
                self._jwks = KeySet.import_key_set(_json_object(answer, "jwks"))  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError) as exc:
                raise RelayError(f"unusable JWKS: {exc}") from exc
        return self._jwks

    # proofs ----------------------------------------------------------------------------------

    def client_assertion(self, audience: str | None = None) -> str:
        """A fresh ``private_key_jwt`` assertion: iss = sub = client_id, aud = the issuer, 60 s."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience or self.issuer,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        header = {"alg": SIGNING_ALG, "kid": self.keys.signing_kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.keys.signing_key, algorithms=[SIGNING_ALG])

    def dpop_proof(self, key: ECKey, method: str, url: str, *, access_token: str | None = None) -> str:
        """A DPoP proof (RFC 9449 section 4.2) for one request; ``ath`` when a token is presented."""
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method,
            "htu": url.split("?", 1)[0].split("#", 1)[0],
            "iat": int(self._clock()),
        }
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        header = {"typ": "dpop+jwt", "alg": SIGNING_ALG, "jwk": dict(key.as_dict(private=False))}
        return jwt.encode(header, claims, key, algorithms=[SIGNING_ALG])

    def _authentication(self) -> dict[str, str]:
        return {
            "client_id": self.client_id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }

    # the flow --------------------------------------------------------------------------------

    def start(
        self, redirect_uri: str, purpose: str, scope: str, state: str | None = None
    ) -> PendingAuthorization:
        """Push the authorization request; send the browser to the returned ``authorize_url``."""
        verifier = new_code_verifier()
        state = state or b64url(secrets.token_bytes(24))
        form = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            "scope": scope,
            "purpose": purpose,
            **self._authentication(),
        }
        answer = self._request("POST", self._endpoint("pushed_authorization_request_endpoint"), data=form)
        if answer.status_code not in (200, 201):
            raise _error_of(answer, "par")
        request_uri = _json_object(answer, "par").get("request_uri")
        if not isinstance(request_uri, str):
            raise RelayError("the PAR answer has no request_uri", status=answer.status_code)
        query = urlencode({"client_id": self.client_id, "request_uri": request_uri})
        return PendingAuthorization(
            state=state,
            code_verifier=verifier,
            redirect_uri=redirect_uri,
            dataset=scope,
            purpose=purpose,
            authorize_url=f"{self._endpoint('authorization_endpoint')}?{query}",
        )

    def finish(self, pending: PendingAuthorization, callback_query: Mapping[str, str]) -> Delivery:
        """Check the redirect back and redeem its code. Raises ``CallbackMismatch`` (wrong ``iss`` or
        ``state``: do not retry), ``AuthorizationError`` (``error=...``) or ``RelayError``."""
        if callback_query.get("iss") != self.issuer:
            raise CallbackMismatch(f"iss {callback_query.get('iss')!r} is not {self.issuer!r} (RFC 9207)")
        if not hmac.compare_digest(callback_query.get("state", "").encode(), pending.state.encode()):
            raise CallbackMismatch("state does not match this authorization")
        if "error" in callback_query:
            raise AuthorizationError(callback_query["error"], callback_query.get("error_description"))
        code = callback_query.get("code")
        if not code:
            raise CallbackMismatch("the redirect carries neither code nor error")
        dpop_key = ECKey.generate_key("P-256")
        token_endpoint = self._endpoint("token_endpoint")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
            **self._authentication(),
        }
        answer = self._request(
            "POST",
            token_endpoint,
            data=form,
            headers={"DPoP": self.dpop_proof(dpop_key, "POST", token_endpoint)},
        )
        if answer.status_code != 200:
            raise _error_of(answer, "token")
        token = _json_object(answer, "token")
        access_token, token_type = token.get("access_token"), token.get("token_type")
        if not isinstance(access_token, str) or str(token_type).lower() != "dpop":
            raise RelayError(f"the token answer is not a DPoP token ({token_type!r})")
        expires_in = token.get("expires_in")
        delivery_id = token.get("delivery_id")
        scope = token.get("scope")
        return Delivery(
            access_token=access_token,
            delivery_id=delivery_id if isinstance(delivery_id, str) else None,
            dpop_key=dpop_key,
            expires_at=self._clock() + (float(expires_in) if isinstance(expires_in, int | float) else 0.0),
            scope=scope if isinstance(scope, str) else None,
        )

    def pick_up(
        self, delivery: Delivery, *, wait_s: float = 60, sleep: Callable[[float], None] = time.sleep
    ) -> SealedDelivery:
        """Fetch the sealed payload, waiting through ``202`` (honouring ``Retry-After``) for up to
        ``wait_s`` seconds. Raises ``DeliveryTimeout``, ``DeliveryGone`` (410) or ``RelayError``."""
        url = f"{self.issuer}{SELF_INFO_PATH}"
        deadline = time.monotonic() + wait_s
        waited = 0.0
        while True:
            headers = {
                "Authorization": f"DPoP {delivery.access_token}",
                "DPoP": self.dpop_proof(delivery.dpop_key, "GET", url, access_token=delivery.access_token),
                "Accept": "application/jose",
            }
            answer = self._request("GET", url, headers=headers)
            if answer.status_code == 200:
                media_type = answer.headers.get("Content-Type", "").split(";")[0].strip()
                if media_type != "application/jose":
                    raise RelayError(f"pickup answered {media_type!r}, not application/jose", status=200)
                return SealedDelivery(compact=answer.text.strip(), delivery_id=delivery.delivery_id)
            if answer.status_code == 410:
                problem = _json_or_none(answer)
                check = problem.get("check") if problem else None
                raise DeliveryGone(check if isinstance(check, str) else None, problem)
            if answer.status_code != 202:
                raise _error_of(answer, "pickup")
            remaining = min(wait_s - waited, deadline - time.monotonic())
            if remaining <= 0:
                raise DeliveryTimeout(f"the delivery was not ready within {wait_s:g} s", status=202)
            delay = min(_retry_after(answer), remaining)
            sleep(delay)
            waited += delay

    def open(self, sealed: SealedDelivery | str) -> dict[str, Any]:
        """Decrypt and verify a sealed payload; the claims (``data`` holds the records)."""
        compact = sealed.compact if isinstance(sealed, SealedDelivery) else sealed
        try:
            decrypted = jwe.decrypt_compact(
                compact, self.keys.encryption_key, algorithms=[ENCRYPTION_ALG, CONTENT_ENCRYPTION]
            )
        except (JoseError, ValueError) as exc:
            raise VerificationError(f"the payload does not decrypt with our key: {exc}") from exc
        header = decrypted.protected
        if header.get("kid") not in (None, self.keys.encryption_kid):
            raise VerificationError(f"the payload is sealed to key {header.get('kid')!r}, not ours")
        if decrypted.plaintext is None:
            raise VerificationError("the payload is empty")
        claims = self._verified_claims(decrypted.plaintext, expected_typ="JWT")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self._clock():
            raise VerificationError("the payload has expired (exp)")
        if not isinstance(claims.get("data"), dict):
            raise VerificationError("the payload has no data")
        return claims

    def verify_webhook(self, body: str | bytes) -> dict[str, Any]:
        """Verify a webhook body (a JWS, ``typ=myna-relay-event+jwt``) and return its ``event``
        (``id``, ``type``, ``delivery_id``, ``occurred_at``; a ``delivery.failed`` the relay could not
        read also ``reason``: ``"unreadable_result"``). Process each event ``id`` once."""
        claims = self._verified_claims(body, expected_typ=WEBHOOK_TYPE)
        event = claims.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise VerificationError("the webhook carries no event")
        return event

    def revoke(self, delivery: Delivery) -> None:
        """Withdraw a delivery not yet picked up (RFC 7009; ``private_key_jwt``)."""
        form = {"token": delivery.access_token, "token_type_hint": "access_token", **self._authentication()}
        answer = self._request("POST", self._endpoint("revocation_endpoint"), data=form)
        if answer.status_code != 200:
            raise _error_of(answer, "revoke")

    # the audit log's signed tree heads (checkpoints) ---------------------------------------------

    def latest_checkpoint(self) -> dict[str, Any]:
        """The relay's newest signed tree head, verified: ``{"seq", "tree_size", "root",
        "signed_tree_head"}``. Keep it (it is JSON) to ask ``consistency`` from later. ``RelayError``
        with status 404 when no checkpoint is signed yet; ``VerificationError`` for a bad head."""
        return self._head_at(LATEST).as_json()

    def checkpoint(self, seq: int) -> dict[str, Any]:
        """Signed tree head number ``seq``, verified (as ``latest_checkpoint``)."""
        return self._head_at(_checkpoint_name(seq)).as_json()

    def consistency(self, kept_head: Mapping[str, Any], seq: int | str = LATEST) -> dict[str, Any]:
        """Prove that the log still extends ``kept_head`` (a head this kit returned earlier) up to
        checkpoint ``seq`` (the latest by default) and return that head, verified: keep it in place
        of the old one.

        Raises ``InconsistentLog`` (a ``VerificationError``) when the relay shows another tree under
        the kept number (``fork``), answers a head older or smaller than the kept one or denies the
        kept one (``rollback``), or its RFC 9162 proof does not verify (``proof``);
        ``VerificationError`` for a head that does not verify; ``RelayError`` for any other refusal;
        ``ValueError`` if ``kept_head`` is not a head or ``seq`` is before it."""
        kept = _kept(kept_head)
        name = _checkpoint_name(seq)
        if name != LATEST and int(name) < kept.seq:
            raise ValueError(f"consistency goes forward: checkpoint {name} is before the kept {kept.seq}")
        url = f"{self.issuer}{CHECKPOINTS_PATH}/{name}/consistency?{urlencode({'from': kept.seq})}"
        answer = self._request("GET", url, headers=self._bearer())
        if answer.status_code == 404:
            raise self._why_not_found(kept, name, answer)
        if answer.status_code != 200:
            raise _error_of(answer, "consistency")
        body = _json_object(answer, "consistency")
        first = self._verified_head(body.get("first"), "consistency: first")
        second = self._verified_head(body.get("second"), "consistency: second")
        if (first.seq, first.tree_size, first.root) != (kept.seq, kept.tree_size, kept.root):
            raise InconsistentLog(
                "fork",
                f"the relay now shows checkpoint {first.seq} as {first.describe()}; "
                f"the kept checkpoint {kept.seq} is {kept.describe()}",
            )
        if name != LATEST and second.seq != int(name):
            raise VerificationError(f"asked for checkpoint {name}, the relay answered {second.seq}")
        if second.seq < first.seq or second.tree_size < first.tree_size:
            raise InconsistentLog(
                "rollback",
                f"the relay's checkpoint {second.seq} ({second.describe()}) is behind the kept "
                f"checkpoint {kept.seq} ({kept.describe()})",
            )
        if second.seq == first.seq and (second.tree_size, second.root) != (first.tree_size, first.root):
            raise InconsistentLog("fork", f"the relay shows two different trees as checkpoint {first.seq}")
        if second.seq == first.seq + 1 and second.previous != _head_hash(first.signed):
            raise InconsistentLog(
                "fork", f"checkpoint {second.seq} does not link to the kept checkpoint {first.seq} (previous)"
            )
        path = _hashes_of(body.get("consistency_path"))
        if path is None or not verify_consistency(
            first.tree_size, second.tree_size, first.root, second.root, path
        ):
            raise InconsistentLog(
                "proof",
                f"the consistency proof from checkpoint {first.seq} to {second.seq} does not verify "
                "(RFC 9162 section 2.1.4.2)",
            )
        return second.as_json()

    def _head_at(self, name: str) -> _Head:
        answer = self._request("GET", f"{self.issuer}{CHECKPOINTS_PATH}/{name}", headers=self._bearer())
        if answer.status_code != 200:
            raise _error_of(answer, "checkpoint")
        head = self._verified_head(_json_object(answer, "checkpoint"), "checkpoint")
        if name != LATEST and head.seq != int(name):
            raise VerificationError(f"asked for checkpoint {name}, the relay answered {head.seq}")
        return head

    def _why_not_found(self, kept: _Head, name: str, answer: requests.Response) -> RelayError:
        """A 404 to ``consistency``: the checkpoint asked for does not exist yet (an ordinary
        refusal), or the relay no longer has the kept checkpoint it signed (a rollback)."""
        try:
            latest: _Head | None = self._head_at(LATEST)
        except RelayError as refused:
            if refused.status != 404:
                raise
            latest = None
        if latest is None:
            return InconsistentLog(
                "rollback",
                f"the relay has no checkpoint at all, but signed checkpoint {kept.seq} ({kept.describe()})",
            )
        if latest.seq < kept.seq or latest.tree_size < kept.tree_size:
            return InconsistentLog(
                "rollback",
                f"the relay's latest checkpoint {latest.seq} ({latest.describe()}) is behind "
                f"the kept checkpoint {kept.seq} ({kept.describe()})",
            )
        if name != LATEST and int(name) > latest.seq:
            return _error_of(answer, "consistency")  # asked beyond the latest: not signed yet
        return InconsistentLog(
            "rollback",
            f"the relay denies the kept checkpoint {kept.seq}, which it signed, though its latest is "
            f"{latest.seq}",
        )

    def _verified_head(self, document: Any, where: str) -> _Head:
        """A head from the relay, once its signature (the relay's JWKS, ``typ``
        ``myna-relay-checkpoint+jwt``) and ``iss`` verify and its JSON says what the claims say."""
        if not isinstance(document, dict):
            raise VerificationError(f"{where}: not a signed tree head")
        signed = document.get("signed_tree_head")
        if not isinstance(signed, str):
            raise VerificationError(f"{where}: no signed_tree_head")
        claims = self._verified_claims(signed, expected_typ=CHECKPOINT_TYP, addressed=False)
        head = _head_of(claims, signed)
        if head is None:
            raise VerificationError(f"{where}: the signed head has no valid seq, tree_size and root")
        for name, signed_value in (("seq", head.seq), ("tree_size", head.tree_size), ("root", head.root_b64)):
            value = document.get(name)
            if isinstance(value, bool) or value != signed_value:
                raise VerificationError(f"{where}: {name} {value!r} is not what the signed head says")
        return head

    def _bearer(self) -> dict[str, str]:
        # An RFC 6750 bearer carrying a fresh client assertion; these endpoints take only the issuer as aud.
        return {"Authorization": f"Bearer {self.client_assertion(self.issuer)}", "Accept": "application/json"}

    # internals -------------------------------------------------------------------------------

    def _verified_claims(
        self, token: str | bytes, *, expected_typ: str, addressed: bool = True
    ) -> dict[str, Any]:
        """The claims of a JWS signed by the relay (``iss`` checked); ``addressed``: it must name us
        in ``aud`` (a signed tree head is addressed to nobody in particular)."""
        text = token.decode("ascii", "replace") if isinstance(token, bytes) else token
        text = text.strip()
        try:
            header = json.loads(base64.urlsafe_b64decode(_padded(text.split(".", 1)[0])))
        except (ValueError, UnicodeDecodeError) as exc:
            raise VerificationError("not a compact JWS") from exc
        if not isinstance(header, dict) or header.get("alg") != SIGNING_ALG:
            raise VerificationError("the signature is not ES256")
        if header.get("typ") != expected_typ:
            raise VerificationError(f"typ {header.get('typ')!r} is not {expected_typ!r}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise VerificationError("the signature names no kid")
        if kid.startswith(EVENT_KID_PREFIX) != (expected_typ == WEBHOOK_TYPE):
            kind = "an event key" if kid.startswith(EVENT_KID_PREFIX) else "the payload key"
            raise VerificationError(f"a {expected_typ} signed by {kind} ({kid!r}) is refused")
        key = self._service_key(kid)
        try:
            payload = jws.deserialize_compact(text, key, algorithms=[SIGNING_ALG]).payload
            claims = json.loads(payload)
        except (JoseError, ValueError) as exc:
            raise VerificationError(f"the signature does not verify: {exc}") from exc
        if not isinstance(claims, dict):
            raise VerificationError("the claims are not an object")
        if claims.get("iss") != self.issuer:
            raise VerificationError(f"iss {claims.get('iss')!r} is not {self.issuer!r}")
        if not addressed:
            return claims
        audience = claims.get("aud")
        if audience != self.client_id and not (isinstance(audience, list) and self.client_id in audience):
            raise VerificationError(f"aud {audience!r} is not {self.client_id!r}")
        return claims

    def _service_key(self, kid: str) -> Any:
        for refresh in (False, True):  # an unknown kid may be a rotated key: fetch the JWKS once more
            keys = self.service_keys(refresh=refresh)
            for key in keys.keys:
                if key.kid == kid:
                    return key
        raise VerificationError(f"kid {kid!r} is not in the relay's JWKS")

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self._http.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise RelayError(f"{method} {url} failed: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class _Head:
    """A signed tree head's numbers (``signed`` and ``previous`` empty for a head the caller kept)."""

    seq: int
    tree_size: int
    root: bytes
    signed: str = ""
    previous: str | None = None

    @property
    def root_b64(self) -> str:
        return b64url(self.root)

    def describe(self) -> str:
        return f"tree size {self.tree_size}, root {self.root_b64}"

    def as_json(self) -> dict[str, Any]:
        """What the relay serves, and what a partner keeps."""
        return {
            "seq": self.seq,
            "tree_size": self.tree_size,
            "root": self.root_b64,
            "signed_tree_head": self.signed,
        }


def _head_of(claims: Mapping[str, Any], signed: str) -> _Head | None:
    seq, tree_size, root = claims.get("seq"), claims.get("tree_size"), claims.get("root")
    root_hash = _hash_of(root)
    if not (_is_count(seq) and _is_count(tree_size)) or root_hash is None:
        return None
    previous = claims.get("previous")
    return _Head(seq, tree_size, root_hash, signed, previous if isinstance(previous, str) else None)


def _kept(head: Mapping[str, Any]) -> _Head:
    """The numbers of a head the partner kept, as ``latest_checkpoint`` or ``consistency`` returned
    it; ``ValueError`` for anything else. Its signature was verified when the kit received it, and
    the relay's ``first`` (verified again) must be exactly it."""
    kept = _head_of(head, "")
    if kept is None:
        raise ValueError("not a signed tree head ({seq, tree_size, root, ...}) as the kit returns it")
    return kept


def _checkpoint_name(seq: int | str) -> str:
    """``latest`` or a checkpoint number (1, 2, ...), as it goes in the path."""
    if seq == LATEST:
        return LATEST
    if not _is_count(seq):
        raise ValueError(f"a checkpoint is a positive integer or {LATEST!r}, not {seq!r}")
    return str(seq)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _hash_of(text: object) -> bytes | None:
    """A SHA-256 hash from its base64url form without padding (43 characters); None for anything else."""
    if not isinstance(text, str) or len(text) != 43 or not _BASE64URL.fullmatch(text):
        return None
    data = base64.urlsafe_b64decode(_padded(text))
    return data if len(data) == HASH_SIZE and b64url(data) == text else None


def _hashes_of(path: object) -> list[bytes] | None:
    """A consistency path (base64url hashes) as bytes; None if any member is not a hash."""
    if not isinstance(path, list):
        return None
    hashes = [_hash_of(node) for node in path]
    return None if None in hashes else [node for node in hashes if node is not None]


def _head_hash(signed_head: str) -> str:
    """How a signed head names the one before it (``previous``): base64url SHA-256 of its text."""
    return b64url(hashlib.sha256(signed_head.encode()).digest())


def _padded(segment: str) -> bytes:
    return (segment + "=" * (-len(segment) % 4)).encode("ascii")


def _retry_after(answer: requests.Response) -> float:
    try:
        return max(0.0, float(answer.headers.get("Retry-After", DEFAULT_RETRY_AFTER_S)))
    except ValueError:
        return DEFAULT_RETRY_AFTER_S


def _json_or_none(answer: requests.Response) -> dict[str, Any] | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _json_object(answer: requests.Response, step: str) -> dict[str, Any]:
    body = _json_or_none(answer)
    if body is None:
        raise RelayError(f"{step}: the answer is not a JSON object", status=answer.status_code)
    return body


def _error_of(answer: requests.Response, step: str) -> RelayError:
    """A ``RelayError`` from an OAuth error (``error``, ``error_description``) or an RFC 9457 problem
    (``type``, ``detail``, ``check``), whichever the answer carries."""
    body = _json_or_none(answer) or {}
    error = body.get("error")
    description = body.get("error_description")
    if not isinstance(error, str):
        problem_type = body.get("type")
        error = problem_type.rsplit(":", 1)[-1] if isinstance(problem_type, str) else None
        description = body.get("detail")
    if error is None:
        challenge = answer.headers.get("WWW-Authenticate", "")
        if 'error="' in challenge:
            error = challenge.split('error="', 1)[1].split('"', 1)[0]
    check = body.get("check")
    message = f"{step}: HTTP {answer.status_code}" + (f" {error}" if error else "")
    if isinstance(description, str):
        message += f": {description}"
    return RelayError(
        message,
        status=answer.status_code,
        error=error,
        description=description if isinstance(description, str) else None,
        check=check if isinstance(check, str) else None,
        problem=body if "type" in body else None,
    )

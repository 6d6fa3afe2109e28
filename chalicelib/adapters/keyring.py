"""The keyring: the stage's working keys, one per purpose and UTC time slot, so that a flow's
symmetric work and the webhook signatures need no KMS request (issue [13]).

Each working key is made once per stage and slot by whichever container needs it first, wrapped
under the stage's KMS data key and stored in the state table (``KEY#<purpose>#<slot>`` / ``KEY``,
``expires_at`` TTL, like every other state item). The KMS encryption context names the purpose,
the slot and the stage (and, for an EC key, its ``kid``): a wrapped key copied to another item,
purpose or stage does not unwrap. The item is written with ``attribute_not_exists(pk)``; the loser
of a creation race reads and unwraps the winner's key, so one slot has one key. Each warm
container unwraps a slot's key once (one KMS ``Decrypt``) and keeps it in memory (bounded); the
plaintext never leaves memory, is never logged, and dies with the container.

| purpose | slot | kind | kept after its slot ends | used for |
|---|---|---|---|---|
| ``token`` | a UTC day | AES-256 (KMS ``GenerateDataKey``) | 2 days | the portal access token, AES-256-GCM |
| ``receipt`` | a UTC month | 256-bit HMAC key (``GenerateDataKey``) | the receipt lifetime + 32 days | receipt link MACs |
| ``event`` | a UTC hour | ES256 (P-256, made here, wrapped with KMS ``Encrypt``) | 2 hours | webhook event JWTs |

Expiry is enforced in code: a key whose ``expires_at`` has passed is refused, cached or not.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import TYPE_CHECKING, Any, Final, Literal

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey

from chalicelib.adapters.aws import error_code, unavailable
from chalicelib.domain.errors import DependencyUnavailable
from chalicelib.domain.ports import Clock, Envelope, Signer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_kms.client import KMSClient

Purpose = Literal["token", "receipt", "event"]
Kind = Literal["secret", "ec"]

EVENT_KID_PREFIX: Final = "event-"
JWKS_CACHE_S: Final = 60  # the event keys a container publishes are at most this old
CACHE_SIZE: Final = 16  # unwrapped keys per container: a few slots of each purpose


@dataclass(frozen=True)
class SlotSpec:
    kind: Kind
    fmt: str  # strftime of the slot's name; also how the name parses back to its start
    keep: timedelta  # how long the key lives after its slot ends

    def start(self, slot: str) -> datetime:
        return datetime.strptime(slot, self.fmt).replace(tzinfo=UTC)

    def end(self, slot: str) -> datetime:
        start = self.start(slot)
        if self.fmt == "%Y%m":
            return (start + timedelta(days=32)).replace(day=1)
        return start + (timedelta(days=1) if self.fmt == "%Y%m%d" else timedelta(hours=1))

    def slot_of(self, moment: datetime) -> str:
        return moment.astimezone(UTC).strftime(self.fmt)

    def is_slot(self, slot: str) -> bool:
        if len(slot) != len(datetime(2000, 1, 1, tzinfo=UTC).strftime(self.fmt)) or not slot.isascii():
            return False
        try:
            return self.slot_of(self.start(slot)) == slot
        except ValueError:
            return False


RECEIPT_KEY_KEEP = timedelta(days=30 + 32)  # receipt links live 30 days (RECEIPT_LIFETIME), plus a slot

SLOTS: Final[dict[Purpose, SlotSpec]] = {
    "token": SlotSpec("secret", "%Y%m%d", timedelta(days=2)),
    "receipt": SlotSpec("secret", "%Y%m", RECEIPT_KEY_KEEP),
    "event": SlotSpec("ec", "%Y%m%dT%H", timedelta(hours=2)),
}


@dataclass(frozen=True)
class WorkingKey:
    purpose: Purpose
    slot: str
    created_at: int  # epoch seconds
    expires_at: int  # epoch seconds: refused from then on
    secret: bytes = field(repr=False)  # 32 key bytes, or the EC private key (PKCS#8 DER)
    public_jwk: dict[str, Any] | None = None  # EC keys only
    # Since when this purpose has had a key in every slot (the previous slot's ``since``, or this
    # key's creation after a gap): what came before was made without the keyring.
    since: int = 0


def kms_context(purpose: Purpose, slot: str, stage: str, kid: str | None = None) -> dict[str, str]:
    context = {"purpose": f"myna-relay:{purpose}", "slot": slot, "stage": stage}
    if kid is not None:
        context["kid"] = kid
    return context


def _public_jwk(private: ec.EllipticCurvePrivateKey, slot: str) -> dict[str, Any]:
    key = ECKey.import_key(private.public_key())
    jwk = dict(key.as_dict(private=False))
    jwk.update({"kid": f"{EVENT_KID_PREFIX}{slot}-{key.thumbprint()[:16]}", "use": "sig", "alg": "ES256"})
    return jwk


class Keyring:
    def __init__(
        self,
        *,
        dynamodb: DynamoDBClient,
        kms: KMSClient,
        table: str,
        data_key_id: str,
        stage: str,
        clock: Clock,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._dynamodb = dynamodb
        self._kms = kms
        self._table = table
        self._data_key_id = data_key_id
        self._stage = stage
        self._clock = clock
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[Purpose, str], WorkingKey] = OrderedDict()
        self._published: tuple[float, list[dict[str, Any]]] | None = None
        self._lock = threading.Lock()  # `chalice local` serves requests on threads

    # -- reading and making keys --------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock.now()

    def current(self, purpose: Purpose) -> WorkingKey:
        """The key of the slot ``now`` is in, made if this stage has none yet."""
        return self._ensure(purpose, [SLOTS[purpose].slot_of(self._clock.now())])[0]

    def current_and_next(self, purpose: Purpose) -> WorkingKey:
        """The current slot's key, having made sure the next slot's key exists too (so it is
        published before it is used): one ``BatchGetItem`` when neither is cached."""
        now = self._clock.now()
        spec = SLOTS[purpose]
        current = spec.slot_of(now)
        upcoming = spec.slot_of(spec.end(current))
        with self._lock:
            cached = (
                self._cached(purpose, current) is not None and self._cached(purpose, upcoming) is not None
            )
        if cached:
            return self._ensure(purpose, [current])[0]
        return self._ensure(purpose, [current, upcoming])[0]

    def find(self, purpose: Purpose, slot: str) -> WorkingKey | None:
        """The slot's key if it exists and has not expired; never makes one (the slot came from
        outside: a ciphertext, a link)."""
        spec = SLOTS[purpose]
        if not spec.is_slot(slot):
            return None
        with self._lock:
            cached = self._cached(purpose, slot)
        if cached is not None:
            return cached
        item = self._get(purpose, slot)
        return self._remember(self._unwrap(purpose, slot, item)) if item is not None else None

    def _ensure(self, purpose: Purpose, slots: Sequence[str]) -> list[WorkingKey]:
        found: dict[str, WorkingKey] = {}
        with self._lock:
            for slot in slots:
                cached = self._cached(purpose, slot)
                if cached is not None:
                    found[slot] = cached
        missing = [slot for slot in slots if slot not in found]
        if missing:
            items = self._batch_get(purpose, missing)
            for slot in missing:
                item = items.get(slot)
                key = self._unwrap(purpose, slot, item) if item is not None else self._create(purpose, slot)
                found[slot] = self._remember(key)
        return [found[slot] for slot in slots]

    def _cached(self, purpose: Purpose, slot: str) -> WorkingKey | None:
        key = self._cache.get((purpose, slot))
        if key is None:
            return None
        if key.expires_at <= int(self._clock.now().timestamp()):
            del self._cache[(purpose, slot)]
            return None
        self._cache.move_to_end((purpose, slot))
        return key

    def _remember(self, key: WorkingKey) -> WorkingKey:
        with self._lock:
            self._cache[(key.purpose, key.slot)] = key
            self._cache.move_to_end((key.purpose, key.slot))
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return key

    def _expires_at(self, purpose: Purpose, slot: str) -> int:
        spec = SLOTS[purpose]
        return int((spec.end(slot) + spec.keep).timestamp())

    def _create(self, purpose: Purpose, slot: str) -> WorkingKey:
        """Make the slot's key and store it wrapped, unless another container got there first:
        then the winner's key is the key."""
        now = int(self._clock.now().timestamp())
        expires_at = self._expires_at(purpose, slot)
        if expires_at <= now:
            raise DependencyUnavailable("the key slot has ended", check="keyring")
        public_jwk: dict[str, Any] | None = None
        try:
            if SLOTS[purpose].kind == "secret":
                answer = self._kms.generate_data_key(
                    KeyId=self._data_key_id,
                    KeySpec="AES_256",
                    EncryptionContext=kms_context(purpose, slot, self._stage),
                )
                secret, wrapped = answer["Plaintext"], answer["CiphertextBlob"]
            else:
                private = ec.generate_private_key(ec.SECP256R1())
                public_jwk = _public_jwk(private, slot)
                secret = private.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                wrapped = self._kms.encrypt(
                    KeyId=self._data_key_id,
                    Plaintext=secret,
                    EncryptionContext=kms_context(purpose, slot, self._stage, public_jwk["kid"]),
                )["CiphertextBlob"]
        except (ClientError, BotoCoreError) as exc:
            operation = "GenerateDataKey" if public_jwk is None else "Encrypt"
            raise unavailable("kms", operation, exc) from exc
        item: dict[str, Any] = {
            "pk": {"S": f"KEY#{purpose}#{slot}"},
            "sk": {"S": "KEY"},
            "wrapped": {"S": base64.b64encode(wrapped).decode()},  # S, like every state item
            "created_at": {"N": str(now)},
            "expires_at": {"N": str(expires_at)},
        }
        since = now
        if purpose == "receipt":  # a month's key: the chain back to the first one (one GetItem)
            spec = SLOTS[purpose]
            previous = self._get(purpose, spec.slot_of(spec.start(slot) - timedelta(seconds=1)))
            since = int(previous.get("since", previous["created_at"])["N"]) if previous else now
        item["since"] = {"N": str(since)}
        if public_jwk is not None:
            item["public_jwk"] = {"S": json.dumps(public_jwk, sort_keys=True)}
        try:
            self._dynamodb.put_item(
                TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise unavailable("dynamodb", "PutItem", exc) from exc
            winner = self._get(purpose, slot)
            if winner is None:  # the winner's item expired meanwhile: not a key anyone may use
                raise DependencyUnavailable("the key slot has ended", check="keyring") from None
            return self._unwrap(purpose, slot, winner)
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "PutItem", exc) from exc
        return WorkingKey(purpose, slot, now, expires_at, secret, public_jwk, since)

    def _unwrap(self, purpose: Purpose, slot: str, item: dict[str, Any]) -> WorkingKey:
        """One KMS Decrypt, pinned to the data key and the slot's context."""
        public_jwk = json.loads(item["public_jwk"]["S"]) if "public_jwk" in item else None
        kid = public_jwk.get("kid") if isinstance(public_jwk, dict) else None
        if (SLOTS[purpose].kind == "ec") != (kid is not None):
            raise DependencyUnavailable("a stored working key is malformed", check="keyring")
        try:
            secret = self._kms.decrypt(
                KeyId=self._data_key_id,
                CiphertextBlob=base64.b64decode(item["wrapped"]["S"]),
                EncryptionContext=kms_context(purpose, slot, self._stage, kid),
            )["Plaintext"]
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("kms", "Decrypt", exc) from exc
        if public_jwk is not None:
            # What this container signs with must be what the JWKS publishes under that kid.
            private = serialization.load_der_private_key(secret, password=None)
            if (
                not isinstance(private, ec.EllipticCurvePrivateKey)
                or _public_jwk(private, slot) != public_jwk
            ):
                raise DependencyUnavailable(
                    "a stored event key does not match its public key", check="keyring"
                )
        elif len(secret) != 32:
            raise DependencyUnavailable("a stored working key is malformed", check="keyring")
        created_at = int(item["created_at"]["N"])
        since = int(item.get("since", item["created_at"])["N"])
        return WorkingKey(purpose, slot, created_at, int(item["expires_at"]["N"]), secret, public_jwk, since)

    # -- the state table ----------------------------------------------------------------------------

    def _live(self, item: dict[str, Any] | None) -> dict[str, Any] | None:
        if item is None or int(item["expires_at"]["N"]) <= int(self._clock.now().timestamp()):
            return None
        return item

    def _get(self, purpose: Purpose, slot: str) -> dict[str, Any] | None:
        key = {"pk": {"S": f"KEY#{purpose}#{slot}"}, "sk": {"S": "KEY"}}
        try:
            item = self._dynamodb.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", "GetItem", exc) from exc
        return self._live(dict(item) if item is not None else None)

    def _batch_get(
        self, purpose: Purpose, slots: Sequence[str], *, attributes: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """The slots' live items, in one ``BatchGetItem`` (consistent reads)."""
        request: dict[str, Any] = {
            "Keys": [{"pk": {"S": f"KEY#{purpose}#{slot}"}, "sk": {"S": "KEY"}} for slot in slots],
            "ConsistentRead": True,
        }
        if attributes:
            request["ProjectionExpression"] = attributes
        found: dict[str, dict[str, Any]] = {}
        pending: dict[str, Any] = {self._table: request}
        try:
            for _ in range(3):  # unprocessed keys (throttling) are asked for again, briefly
                answer = self._dynamodb.batch_get_item(RequestItems=pending)
                for item in answer.get("Responses", {}).get(self._table, []):
                    live = self._live(dict(item))
                    if live is not None:
                        found[str(live["pk"]["S"]).rsplit("#", 1)[1]] = live
                pending = dict(answer.get("UnprocessedKeys") or {})
                if not pending:
                    return found
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", "BatchGetItem", exc) from exc
        raise DependencyUnavailable("dynamodb BatchGetItem failed: unprocessed keys", check="dynamodb")

    # -- publishing -------------------------------------------------------------------------------

    def published_event_keys(self) -> list[dict[str, Any]]:
        """The public event keys of the previous, current and next hour that exist: one
        ``BatchGetItem`` (public halves only, no KMS) at most every ``JWKS_CACHE_S`` seconds."""
        now = self._clock.now()
        with self._lock:
            if self._published is not None and now.timestamp() - self._published[0] < JWKS_CACHE_S:
                return list(self._published[1])
        spec = SLOTS["event"]
        current = spec.slot_of(now)
        slots = [
            spec.slot_of(spec.start(current) - timedelta(hours=1)),
            current,
            spec.slot_of(spec.end(current)),
        ]
        items = self._batch_get("event", slots, attributes="pk, public_jwk, expires_at")
        keys = [json.loads(items[slot]["public_jwk"]["S"]) for slot in slots if slot in items]
        keys.sort(key=lambda jwk: str(jwk["kid"]), reverse=True)  # newest first
        with self._lock:
            self._published = (now.timestamp(), keys)
        return list(keys)


# -- what the domain sees ---------------------------------------------------------------------------

TOKEN_VERSION: Final = 0xA1  # neither an AWS KMS ciphertext (0x01…) nor moto's (a key id's hex)


def canonical(context: dict[str, str]) -> bytes:
    return json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class KeyringEnvelope:
    """``Envelope`` under the daily ``token`` key: AES-256-GCM, the domain's encryption context
    bound as associated data. ``version (1) || slot (8, YYYYMMDD) || nonce (12) || ct || tag (16)``:
    37 bytes over the plaintext (a KMS ciphertext adds about 150). A ciphertext without the version
    byte was made by KMS before the keyring existed, and is handed to ``legacy``."""

    def __init__(self, keyring: Keyring, *, legacy: Envelope | None = None) -> None:
        self._keyring = keyring
        self._legacy = legacy

    def encrypt(self, plaintext: bytes, *, context: dict[str, str]) -> bytes:
        key = self._keyring.current("token")
        header = bytes([TOKEN_VERSION]) + key.slot.encode()
        nonce = secrets.token_bytes(12)
        return header + nonce + AESGCM(key.secret).encrypt(nonce, plaintext, header + canonical(context))

    def decrypt(self, ciphertext: bytes, *, context: dict[str, str]) -> bytes:
        if ciphertext[:1] != bytes([TOKEN_VERSION]):
            if self._legacy is None:
                raise DependencyUnavailable("not a keyring ciphertext", check="keyring")
            return self._legacy.decrypt(ciphertext, context=context)
        header, nonce, sealed = ciphertext[:9], ciphertext[9:21], ciphertext[21:]
        key = self._keyring.find("token", header[1:].decode("ascii", "replace"))
        if key is None or len(sealed) < 16:
            raise DependencyUnavailable("the token key of this ciphertext is gone", check="keyring")
        try:
            return AESGCM(key.secret).decrypt(nonce, sealed, header + canonical(context))
        except InvalidTag:
            raise DependencyUnavailable("the ciphertext does not decrypt", check="keyring") from None


class KeyringLinkMac:
    """``LinkMac`` under the monthly ``receipt`` key, chosen by the link's issue time."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def mac(self, message: bytes, *, issued_at: datetime) -> str:
        key = self._keyring.current("receipt")
        if key.slot != SLOTS["receipt"].slot_of(issued_at):
            raise DependencyUnavailable("a link must be made in its own slot", check="keyring")
        return _b64(hmac.new(key.secret, message, sha256).digest())

    def verify(self, message: bytes, tag: str, *, issued_at: datetime) -> bool | None:
        """True or False; None for a link dated before the receipt keys existed without a gap
        (made by the release before the keyring: the caller checks it with the KMS key). Only
        such a date costs a KMS call, and only for the link lifetime after the first key."""
        issued = int(issued_at.timestamp())
        spec = SLOTS["receipt"]
        key = self._keyring.find("receipt", spec.slot_of(issued_at))
        if key is None or issued < key.created_at:
            # Dated where no key of ours could have made it: before the keyring, or forged. The
            # newest key (this month's or last month's; never made here) says since when keys exist.
            this_month = spec.slot_of(self._keyring.now())
            newest = self._keyring.find("receipt", this_month) or self._keyring.find(
                "receipt", spec.slot_of(spec.start(this_month) - timedelta(seconds=1))
            )
            return None if newest is None or issued < newest.since else False
        expected = _b64(hmac.new(key.secret, message, sha256).digest())
        return hmac.compare_digest(expected.encode(), tag.encode("utf-8", "replace"))


class LocalSigner:
    """``Signer`` with one working EC key held in memory."""

    def __init__(self, key: WorkingKey) -> None:
        private = serialization.load_der_private_key(key.secret, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey) or key.public_jwk is None:
            raise DependencyUnavailable("not an event key", check="keyring")
        self._private = private
        self._jwk = key.public_jwk

    def public_jwk(self) -> dict[str, Any]:
        return dict(self._jwk)

    def sign(self, message: bytes) -> bytes:
        r, s = decode_dss_signature(self._private.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class KeyringEventSigners:
    """``SignerSource`` for webhook events: the current hour's event key (the next hour's made
    with it, so it is in the JWKS before its first use)."""

    def __init__(self, keyring: Keyring, signer: Callable[[WorkingKey], Signer] = LocalSigner) -> None:
        self._keyring = keyring
        self._signer = signer
        self._last: tuple[WorkingKey, Signer] | None = None  # the key parsed once per slot

    def current(self) -> Signer:
        key = self._keyring.current_and_next("event")
        last = self._last
        if last is not None and last[0] is key:
            return last[1]
        signer = self._signer(key)
        self._last = (key, signer)
        return signer


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

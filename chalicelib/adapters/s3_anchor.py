"""Signed tree heads copied where the operator cannot rewrite them: an S3 bucket with Object Lock
in compliance mode (retention set on the bucket: a head can be neither deleted nor overwritten by
anyone, the account's root included, until it ends; see docs/security.md "threat model").

Why: a DynamoDB administrator can delete the latest checkpoint and every record after the one
before it, and the table alone would look whole. Against the bucket, ``relayctl audit verify``
names the missing checkpoint. Writing a head is idempotent (the same head twice is one head);
a *different* head under an anchored sequence number is refused: that would be a fork.

One object per head, ``checkpoints/<seq, 12 digits>.json``: ``{"document", "signed_head"}``,
the head as the audit table stores it. Listing after a sequence number is one request per 1,000
heads; nothing on the service's own path lists the bucket.

Object Lock protects object *versions*; it does not stop anyone with ``s3:DeleteObject`` from
putting a delete marker on a key (the key then reads as missing) nor, behind that marker, from
writing a second version under it (``If-None-Match`` only looks at the current version). So what
a verifier trusts is the key's **first version**, and any delete marker or later version is itself
the evidence of tampering: ``history`` reads a head that way (``s3:ListBucketVersions`` and
``s3:GetObjectVersion``), and ``sequence_numbers`` lists versions and delete markers alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.aws import error_code, unavailable
from chalicelib.domain.checkpoints import LogInconsistent, TreeHead

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

PREFIX = "checkpoints/"


def object_key(seq: int) -> str:
    return f"{PREFIX}{seq:012d}.json"


@dataclass(frozen=True)
class AnchoredHead:
    seq: int
    document: str
    signed_head: str


@dataclass(frozen=True)
class AnchorHistory:
    """Every trace a head's key left in the versioned bucket: its first version (the head as first
    anchored), how many versions were written after it and how many delete markers were put."""

    first: AnchoredHead
    later_versions: int
    delete_markers: int

    @property
    def tampered(self) -> bool:
        return bool(self.later_versions or self.delete_markers)


class S3HeadAnchor:
    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    @property
    def bucket(self) -> str:
        return self._bucket

    def anchor(self, head: TreeHead, document: str) -> None:
        body = json.dumps({"document": document, "signed_head": head.signed_head}, separators=(",", ":"))
        try:
            # Object Lock buckets take only writes carrying a checksum; the bucket's default
            # retention locks the object (compliance mode) as it is written. If-None-Match: the
            # first head written under a sequence number is the only one (no second version).
            self._client.put_object(
                Bucket=self._bucket,
                Key=object_key(head.seq),
                Body=body.encode(),
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
                IfNoneMatch="*",
            )
            return
        except ClientError as exc:
            if error_code(exc) not in ("PreconditionFailed", "412"):
                raise unavailable("s3", "PutObject", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("s3", "PutObject", exc) from exc
        existing = self.get(head.seq)  # anchored before: by a run that crashed before marking it
        if existing is None or existing.signed_head != head.signed_head or existing.document != document:
            raise LogInconsistent(
                f"checkpoint {head.seq} is anchored with another head: refusing a fork", check="audit.anchor"
            )

    def get(self, seq: int) -> AnchoredHead | None:
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=object_key(seq))
            data = json.loads(answer["Body"].read())
        except ClientError as exc:
            # (without s3:ListBucket, S3 answers a missing key 403: only relayctl asks for those)
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise unavailable("s3", "GetObject", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("s3", "GetObject", exc) from exc
        except ValueError:
            return AnchoredHead(seq, "", "")  # unreadable: compared, it differs from any head
        return AnchoredHead(seq, str(data.get("document", "")), str(data.get("signed_head", "")))

    def history(self, seq: int) -> AnchorHistory | None:
        """Head ``seq`` as first anchored, with what was done to its key since; None if no version
        of it was ever written (a delete marker alone is not a head, but it is reported). Two
        requests (the key's versions, then its first version's body)."""
        key = object_key(seq)
        try:
            listed = self._client.list_object_versions(Bucket=self._bucket, Prefix=key)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("s3", "ListObjectVersions", exc) from exc
        versions = [v for v in listed.get("Versions", []) if v.get("Key") == key]
        markers = [m for m in listed.get("DeleteMarkers", []) if m.get("Key") == key]
        if not versions:
            if markers:  # a marker on a key with no version: evidence of tampering all the same
                return AnchorHistory(AnchoredHead(seq, "", ""), 0, len(markers))
            return None
        first = min(versions, key=lambda v: v["LastModified"])
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=key, VersionId=first["VersionId"])
            data = json.loads(answer["Body"].read())
            head = AnchoredHead(seq, str(data.get("document", "")), str(data.get("signed_head", "")))
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("s3", "GetObject", exc) from exc
        except ValueError:
            head = AnchoredHead(seq, "", "")  # unreadable: compared, it differs from any head
        return AnchorHistory(head, len(versions) - 1, len(markers))

    def sequence_numbers(self, *, after: int = 0) -> Iterator[int]:
        """The sequence numbers above ``after`` whose key has any version or delete marker, in
        order (paginated listing of versions: a delete marker does not hide a head from it)."""
        last = None
        key_marker, version_marker = object_key(after), ""
        try:
            while True:
                page = (
                    self._client.list_object_versions(
                        Bucket=self._bucket,
                        Prefix=PREFIX,
                        KeyMarker=key_marker,
                        VersionIdMarker=version_marker,
                    )
                    if version_marker
                    else self._client.list_object_versions(
                        Bucket=self._bucket, Prefix=PREFIX, KeyMarker=key_marker
                    )
                )
                keys = sorted(
                    {entry["Key"] for entry in (*page.get("Versions", []), *page.get("DeleteMarkers", []))}
                )
                for key in keys:
                    name = key.removeprefix(PREFIX).removesuffix(".json")
                    if name.isdigit() and int(name) > after and int(name) != last:
                        last = int(name)
                        yield last
                if not page.get("IsTruncated"):
                    return
                key_marker, version_marker = page["NextKeyMarker"], page["NextVersionIdMarker"]
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("s3", "ListObjectVersions", exc) from exc

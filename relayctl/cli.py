"""``python -m relayctl``: the operator's tool for partners, the audit log and the portal mapping.

Every partner command validates with the same domain rules as the service and changes DynamoDB
with one conditional write, so a refused command leaves nothing half-written (``purge-deliveries``
makes one transaction per delivery it revokes, each conditional on its flow's version). The audit commands
verify the log offline against its signed checkpoints, checkpoint on demand (on ``dev``/``prod`` by
invoking the stack's own function: only its role may sign), and export records
(``relayctl/audit.py``). Exit status: 0 done (or verified), 1 refused, failed or not
verified (the message says why and where), 2 usage error.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from chalicelib.domain.clock import SystemClock
from chalicelib.domain.errors import RelayError
from chalicelib.domain.ports import PartnerRecord
from chalicelib.domain.registry import PartnerRegistry
from chalicelib.settings import DEPLOYED_STAGES, PARTNER_CACHE_MAX_TTL_S
from relayctl.audit import AuditError
from relayctl.target import REPO_ROOT, Target, TargetError, environment_target, local_target

MAX_DOCUMENT_BYTES = 256 * 1024
FALLBACK_ISSUER = "https://myna-relay.invalid"


class CommandError(RuntimeError):
    """A refusal the operator can act on; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relayctl", description="Operate myna-relay.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="the stack started by `make run`")
    where.add_argument("--stage", choices=["local", "test", "dev", "prod"], help="a deployed stage")
    parser.add_argument("--state-dir", help="where `make run` records its stack (default .local/)")
    groups = parser.add_subparsers(dest="group", required=True)

    partners = groups.add_parser("partners", help="register and manage partners")
    commands = partners.add_subparsers(dest="command", required=True)
    register = commands.add_parser("register", help="register a new partner from a JSON document")
    register.add_argument("file", help="partner document (JSON), or - for standard input")
    register.add_argument("--update", action="store_true", help="replace an existing partner's document")
    listing = commands.add_parser("list", help="list partners")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    for name, text in (
        ("show", "show one partner"),
        ("disable", "refuse the partner's requests"),
        ("enable", "accept the partner's requests again"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("partner_id")
    purge = commands.add_parser(
        "purge-deliveries",
        help="revoke a disabled partner's waiting (ready) deliveries: payload deleted, audit record "
        "written; without --yes, only list them",
    )
    purge.add_argument("partner_id")
    purge.add_argument("--yes", action="store_true", help="revoke them (default: say which, change nothing)")
    rotate = commands.add_parser("rotate-keys", help="replace a partner's JWKS")
    rotate.add_argument("partner_id")
    rotate.add_argument("jwks_file", help="new public JWKS (JSON), or - for standard input")

    preview = commands.add_parser(
        "preview",
        help="render a partner's consent page (HTML and PNG) as its customers will see it; stores nothing",
    )
    preview.add_argument("partner_id", nargs="?", help="a registered partner (of --local or --stage)")
    preview.add_argument(
        "--document", metavar="FILE", help="a partner document (JSON) not registered yet; needs no AWS"
    )
    preview.add_argument(
        "--purpose", action="append", metavar="ID", help="this purpose only (repeatable; default: every one)"
    )
    preview.add_argument("--lang", choices=["ja", "en"], help="this language only (default: both)")
    preview.add_argument("--out", required=True, metavar="DIR", help="where to write the pages")
    preview.add_argument("--no-png", action="store_true", help="write the HTML only (no Chromium needed)")

    portal = groups.add_parser("portal", help="the portal mapping (names, paths, types) the relay reads with")
    portal_commands = portal.add_subparsers(dest="command", required=True)
    check = portal_commands.add_parser(
        "check-mapping",
        help="validate a portal mapping and show what a sample result yields (names and counts, no values)",
    )
    check.add_argument(
        "file", metavar="FILE", help="a portal mapping (JSON), e.g. chalicelib/mapping/portal-mapping.json"
    )
    check.add_argument(
        "--sample",
        metavar="RESULT.json",
        help="an IF001-06 answer, its selfPersonalData string, or the decoded list; needs no AWS",
    )
    check.add_argument("--json", action="store_true", help="the report as JSON")

    audit = groups.add_parser("audit", help="verify, checkpoint and export the audit log")
    audit_commands = audit.add_subparsers(dest="command", required=True)
    verify = audit_commands.add_parser(
        "verify", help="check every checkpoint, signature, link and record; name the first mismatch"
    )
    verify.add_argument(
        "--jwks", metavar="FILE", help="public JWKS to verify with (default: the stage's KMS signing key)"
    )
    verify.add_argument(
        "--trusted-head",
        metavar="FILE",
        help="a signed head kept earlier (JWS, or the JSON of GET /v1/audit/checkpoints/latest): check the "
        "log still holds it, then verify only what came after",
    )
    verify.add_argument(
        "--no-anchor", action="store_true", help="do not compare the heads with the write-once bucket"
    )
    verify.add_argument(
        "--retention-days",
        type=int,
        default=7 * 365,
        metavar="N",
        help="records older than this may have expired (default 2555, the service's RELAY_AUDIT_RETENTION_DAYS)",
    )
    audit_commands.add_parser(
        "checkpoint",
        help="sign a checkpoint over the records since the last one now (dev/prod: by invoking the "
        "stack's AuditCheckpoint function, which alone may sign; --local and test: here)",
    )
    export = audit_commands.add_parser("export", help="write the records of a date range (UTC)")
    export.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD", help="first day")
    export.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD", help="last day (inclusive)")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="default jsonl")
    export.add_argument(
        "--japanese-headers", action="store_true", help="CSV headers as the 情報提供等記録 field names"
    )
    export.add_argument("--output", metavar="FILE", help="write to FILE (CSV with a BOM) instead of stdout")
    return parser


def read_json(source: str, stdin: TextIO) -> Any:
    try:
        if source == "-":
            text = stdin.read(MAX_DOCUMENT_BYTES + 1)
        else:
            path = Path(source)
            if path.stat().st_size > MAX_DOCUMENT_BYTES:
                raise CommandError(f"{source} is larger than {MAX_DOCUMENT_BYTES} bytes")
            text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{source} is not UTF-8 text") from None
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise CommandError(f"{source} is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def resolve_target(args: argparse.Namespace) -> Target:
    return local_target(args.state_dir) if args.local else environment_target(args.stage)


def registry_for(target: Target) -> PartnerRegistry:
    from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore

    store = DynamoPartnerStore(
        target.dynamodb(), target.partners_table, allow_loopback=target.allows_loopback
    )
    return PartnerRegistry(store, SystemClock(), allow_loopback=target.allows_loopback)


def summary(record: PartnerRecord) -> dict[str, Any]:
    partner = record.partner
    return {
        "id": partner.id,
        "enabled": partner.enabled,
        "name_ja": partner.names.ja,
        "name_en": partner.names.en,
        "purposes": [purpose.id for purpose in partner.purposes],
        "keys": [f"{key.kid} ({key.use} {key.alg})" for key in partner.jwks.keys],
        "version": record.version,
        "updated_at": record.updated_at.isoformat(),
    }


def run(args: argparse.Namespace, out: TextIO, stdin: TextIO, err: TextIO = sys.stderr) -> None:
    if args.group == "audit":
        run_audit(args, out, err)
    elif args.group == "portal":
        run_portal(args, out)
    elif args.command == "preview":
        run_preview(args, out, stdin, err)
    else:
        run_partners(args, out, stdin)


def run_portal(args: argparse.Namespace, out: TextIO) -> None:
    from relayctl.portal import CheckError, check_mapping

    try:
        usable = check_mapping(args.file, args.sample, out, as_json=args.json)
    except CheckError as exc:
        raise CommandError(str(exc)) from None
    if not usable:
        raise CommandError("under this mapping the sample would fail a flow (see above)")


def run_partners(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    target = resolve_target(args)
    registry = registry_for(target)
    command = args.command
    if command == "purge-deliveries":
        purge_deliveries(target, registry, args.partner_id, out, apply=args.yes)
    elif command == "register":
        document = read_json(args.file, stdin)
        partner = registry.update(document) if args.update else registry.register(document)
        verb = "updated" if args.update else "registered"
        print(
            f"{verb} partner {partner.id} (purposes: {', '.join(p.id for p in partner.purposes)})", file=out
        )
    elif command == "list":
        records = registry.list()
        if args.json:
            print(json.dumps([summary(r) for r in records], ensure_ascii=False, indent=2), file=out)
        elif not records:
            print("no partners registered", file=out)
        else:
            print(f"{'ID':<24} {'ENABLED':<8} {'PURPOSES':<40} NAME", file=out)
            for record in records:
                row = summary(record)
                enabled = "yes" if row["enabled"] else "no"
                print(
                    f"{row['id']:<24} {enabled:<8} {','.join(row['purposes']):<40} {row['name_en']}", file=out
                )
    elif command == "show":
        record = registry.get(args.partner_id)
        shown = {**summary(record), "document": record.partner.model_dump(mode="json")}
        print(json.dumps(shown, ensure_ascii=False, indent=2), file=out)
    elif command in ("disable", "enable"):
        partner = registry.set_enabled(args.partner_id, enabled=command == "enable")
        state = "enabled" if partner.enabled else "disabled"
        print(
            f"partner {partner.id} is {state}; every warm container of the service sees it "
            f"within {PARTNER_CACHE_MAX_TTL_S} s (its partner cache)",
            file=out,
        )
    elif command == "rotate-keys":
        rotation = registry.rotate_keys(args.partner_id, read_json(args.jwks_file, stdin))
        print(
            f"partner {rotation.partner.id}: keys added {list(rotation.added)}, "
            f"removed {list(rotation.removed)}, kept {list(rotation.kept)}; "
            f"in use on every warm container within {PARTNER_CACHE_MAX_TTL_S} s",
            file=out,
        )


def purge_deliveries(
    target: Target, registry: PartnerRegistry, partner_id: str, out: TextIO, *, apply: bool
) -> None:
    """Flow ids and counts only: a flow id is a random identifier, never personal data."""
    from chalicelib.adapters.dynamodb_state import DynamoStateStore
    from chalicelib.domain.partner_purge import REASON, purge_waiting_deliveries

    store = DynamoStateStore(target.dynamodb(), target.state_table, audit_table=target.audit_table)
    result = purge_waiting_deliveries(
        partner_id, partners=registry, flows=store, store=store, clock=SystemClock(), apply=apply
    )
    read = f"(read {result.examined} live flows of every partner from the due index)"
    if not result.revoked:
        print(f"partner {partner_id}: no waiting deliveries {read}", file=out)
    elif apply:
        print(
            f"partner {partner_id}: {len(result.revoked)} waiting deliveries revoked ({REASON}): "
            f"payload deleted, audit record written {read}",
            file=out,
        )
    else:
        print(
            f"partner {partner_id}: {len(result.revoked)} waiting deliveries would be revoked; "
            f"nothing changed, run again with --yes {read}",
            file=out,
        )
    for flow_id in result.revoked:
        print(f"  {flow_id}", file=out)
    if result.past_data_life:
        print(
            f"{len(result.past_data_life)} past their data life, left to the scheduled expiry: "
            + ", ".join(result.past_data_life),
            file=out,
        )
    if result.moved_on:
        print(
            f"{len(result.moved_on)} ended meanwhile by another step, not revoked: "
            + ", ".join(result.moved_on),
            file=out,
        )


def run_preview(args: argparse.Namespace, out: TextIO, stdin: TextIO, err: TextIO) -> None:
    """Read the partner (its document, or the registry: read only), render, write. Nothing stored."""
    from chalicelib.domain.partners import parse_partner_document
    from relayctl import preview

    if (args.partner_id is None) == (args.document is None):
        raise CommandError("preview needs a registered PARTNER_ID or --document FILE (one of them)")
    if args.document is not None:
        allow_loopback = bool(args.local or args.stage == "local")
        partner = parse_partner_document(read_json(args.document, stdin), allow_loopback=allow_loopback)
    else:
        partner = registry_for(resolve_target(args)).get(args.partner_id).partner
        if not partner.enabled:
            print(
                f"relayctl: note: partner {partner.id} is disabled; its customers see no page now", file=err
            )
    try:
        result = preview.write_previews(
            partner,
            Path(args.out),
            purpose_ids=args.purpose,
            langs=[args.lang] if args.lang else None,
            png=not args.no_png,
        )
    except preview.PreviewError as exc:
        raise CommandError(str(exc)) from None
    for path in sorted([*result.html, *result.png]):
        print(f"wrote {path}", file=out)
    if result.no_png:  # asked for and not taken: the review is not complete, so not a success
        raise CommandError(f"{result.no_png}; the HTML pages are written (--no-png to want only those)")


def issuer_for(target: Target, err: TextIO) -> str:
    """The ``iss`` of an on-demand checkpoint: what the service of that stage signs with."""
    configured = os.environ.get("RELAY_ISSUER") or target.api_url or stage_issuer(target.stage)
    if configured:
        return configured
    print(
        f"relayctl: warning: no issuer known for stage {target.stage} (set RELAY_ISSUER); "
        f"signing as {FALLBACK_ISSUER}",
        file=err,
    )
    return FALLBACK_ISSUER


def stage_issuer(stage: str) -> str | None:
    """``RELAY_ISSUER`` of the stage in ``.chalice/config.json``, when the checkout has it."""
    try:
        config = json.loads((REPO_ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
        value = config["stages"][stage]["environment_variables"].get("RELAY_ISSUER")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return str(value) if value else None


def run_audit(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    from chalicelib.adapters.dynamodb_audit import DynamoAuditLog
    from chalicelib.adapters.kms_signer import KmsSigner
    from chalicelib.adapters.s3_anchor import S3HeadAnchor
    from relayctl import audit

    if args.command == "export":  # refuse bad dates before reaching for AWS
        start = audit.parse_day(args.start, "--from")
        end = audit.parse_day(args.end, "--to")
        if start > end:
            raise CommandError(f"--from {start} is after --to {end}")
        if args.japanese_headers and args.format != "csv":
            raise CommandError("--japanese-headers applies to --format csv only")
    jwks = read_json(args.jwks, sys.stdin) if args.command == "verify" and args.jwks else None
    trusted_document = (
        read_json(args.trusted_head, sys.stdin) if args.command == "verify" and args.trusted_head else None
    )
    target = resolve_target(args)
    log = DynamoAuditLog(
        target.dynamodb(), target.audit_table, retention=timedelta(days=getattr(args, "retention_days", 2555))
    )
    if args.command == "verify":
        if jwks is not None:
            keys, source = audit.keys_from_jwks(jwks, args.jwks), f"in {args.jwks}"
        else:  # the key is fetched once; every check below is offline
            jwk = KmsSigner(target.kms(), target.signing_key).public_jwk()
            keys = audit.keys_from_jwks({"keys": [jwk]}, target.signing_key)
            source = f"the stage's signing key ({target.signing_key})"
        trusted = (
            audit.trusted(audit.trusted_head_from(trusted_document, args.trusted_head), keys, source)
            if trusted_document is not None
            else None
        )
        anchor = None if args.no_anchor else S3HeadAnchor(target.s3(), target.heads_bucket)
        result = audit.Verifier(
            source=log,
            keys=keys,
            key_source=source,
            now=SystemClock().now(),
            retention=timedelta(days=args.retention_days),
            anchor=anchor,
        ).run(trusted)
        expired = f" ({result.expired} expired by retention)" if result.expired else ""
        since = f" after trusted checkpoint {result.started_at}" if result.started_at else ""
        print(
            f"verified {result.checkpoints} checkpoints{since} covering {result.covered} records{expired}; "
            f"{result.pending} newer records not yet checkpointed",
            file=out,
        )
        if result.latest_seq:
            print(
                f"latest signed head: checkpoint {result.latest_seq}, sha256 {result.latest_head}", file=out
            )
        if anchor is not None:
            print(f"anchored in s3://{anchor.bucket}: {result.anchored} of them", file=out)
    elif args.command == "checkpoint" and target.stage in DEPLOYED_STAGES:
        invoke_checkpoint(target, out)
    elif args.command == "checkpoint":
        from chalicelib.domain.checkpoints import SETTLE, CheckpointService, b64

        service = CheckpointService(
            store=log,
            signer=KmsSigner(target.kms(), target.signing_key),
            clock=SystemClock(),
            issuer=issuer_for(target, err),
            anchor=S3HeadAnchor(target.s3(), target.heads_bucket),
        )
        checkpoint = service.checkpoint()
        if checkpoint is None:
            settle = int(SETTLE.total_seconds())
            print(f"no records to checkpoint (a record is covered once it is {settle} s old)", file=out)
        else:
            print(
                f"checkpoint {checkpoint.seq}: {checkpoint.tree_size - checkpoint.first_index} records "
                f"through {checkpoint.through}; tree size {checkpoint.tree_size}, root {b64(checkpoint.root)}",
                file=out,
            )
    elif args.command == "export":
        rendered = io.StringIO(newline="")  # rendered whole first: a bad record leaves no partial file
        records = log.records_between(start, end)
        if args.format == "csv":
            count = audit.write_csv(records, rendered, japanese=args.japanese_headers)
        else:
            count = audit.write_jsonl(records, rendered)
        if args.output is None:
            out.write(rendered.getvalue())
            return
        encoding = "utf-8-sig" if args.format == "csv" else "utf-8"  # the BOM tells Excel it is UTF-8
        try:
            with open(args.output, "w", encoding=encoding, newline="") as stream:
                stream.write(rendered.getvalue())
        except OSError as exc:
            raise CommandError(f"cannot write {args.output}: {exc.strerror}") from None
        print(f"exported {count} records ({start} to {end}) to {args.output}", file=out)


def scheduled_event(target: Target, account: str) -> dict[str, Any]:
    """What EventBridge sends the scheduled function (Chalice reads each of these fields)."""
    return {
        "version": "0",
        "id": f"relayctl-{uuid.uuid4()}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": SystemClock().now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": target.region,
        "resources": [],
        "detail": {},
    }


def invoke_checkpoint(target: Target, out: TextIO) -> None:
    """A deployed stage's checkpoint is signed by its own ``AuditCheckpoint`` function (the signing
    key allows ``kms:Sign`` to the stack's roles only): invoked and waited for (RequestResponse);
    the operator needs ``lambda:InvokeFunction`` on it and ``cloudformation:DescribeStackResource``."""
    from botocore.exceptions import BotoCoreError, ClientError

    from chalicelib.domain.checkpoints import SETTLE
    from infra.deployment import AUDIT_CHECKPOINT

    name, account = target.stack_function(AUDIT_CHECKPOINT.logical_id)
    try:
        answer = target.lambda_().invoke(
            FunctionName=name,
            InvocationType="RequestResponse",
            Payload=json.dumps(scheduled_event(target, account)).encode(),
        )
        raw = answer["Payload"].read()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CommandError(f"cannot invoke {name} ({error.get('Code')}: {error.get('Message')})") from None
    except BotoCoreError as exc:
        raise CommandError(f"cannot invoke {name}: {exc}") from None
    try:
        result = json.loads(raw) if raw else None
    except ValueError:
        result = None
    if answer.get("FunctionError"):
        detail = (
            f"{result.get('errorType')}: {result.get('errorMessage')}"
            if isinstance(result, dict)
            else answer["FunctionError"]
        )
        raise CommandError(
            f"the checkpoint function {name} failed ({detail}); see its log /aws/lambda/{name} "
            "(docs/deploy.md, AuditCheckpointErrorsAlarm)"
        )
    if isinstance(result, dict) and result.get("records") == 0 and "seq" not in result:
        settle = int(SETTLE.total_seconds())
        print(
            f"no records to checkpoint (a record is covered once it is {settle} s old); by {name}", file=out
        )
    elif isinstance(result, dict) and {"seq", "records", "tree_size"} <= set(result):
        print(
            f"checkpoint {result['seq']}: {result['records']} records; tree size {result['tree_size']}; "
            f"signed by {name}",
            file=out,
        )
    else:
        raise CommandError(f"the checkpoint function {name} answered {raw[:200]!r}, not a checkpoint result")


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args, out, sys.stdin, err)
    except (CommandError, TargetError, AuditError) as exc:
        print(f"relayctl: {exc}", file=err)
        return 1
    except RelayError as exc:
        print(f"relayctl: {exc.title.lower()}: " + (exc.detail if not exc.errors else ""), file=err)
        for line in exc.errors:
            print(f"  - {line}", file=err)
        return 1
    return 0

"""``python -m relayctl``: the operator's tool for partners (and, later, the audit log).

Every command validates with the same domain rules as the service and changes DynamoDB with one
conditional write, so a refused command leaves nothing half-written. Exit status: 0 done,
1 refused or failed (the message says why), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from chalicelib.domain.clock import SystemClock
from chalicelib.domain.errors import RelayError
from chalicelib.domain.ports import PartnerRecord
from chalicelib.domain.registry import PartnerRegistry
from relayctl.target import Target, TargetError, environment_target, local_target

MAX_DOCUMENT_BYTES = 256 * 1024


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
    rotate = commands.add_parser("rotate-keys", help="replace a partner's JWKS")
    rotate.add_argument("partner_id")
    rotate.add_argument("jwks_file", help="new public JWKS (JSON), or - for standard input")
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


def run(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    registry = registry_for(resolve_target(args))
    command = args.command
    if command == "register":
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
        print(f"partner {partner.id} is {'enabled' if partner.enabled else 'disabled'}", file=out)
    elif command == "rotate-keys":
        rotation = registry.rotate_keys(args.partner_id, read_json(args.jwks_file, stdin))
        print(
            f"partner {rotation.partner.id}: keys added {list(rotation.added)}, "
            f"removed {list(rotation.removed)}, kept {list(rotation.kept)}",
            file=out,
        )


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args, out, sys.stdin)
    except (CommandError, TargetError) as exc:
        print(f"relayctl: {exc}", file=err)
        return 1
    except RelayError as exc:
        print(f"relayctl: {exc.title.lower()}: " + (exc.detail if not exc.errors else ""), file=err)
        for line in exc.errors:
            print(f"  - {line}", file=err)
        return 1
    return 0

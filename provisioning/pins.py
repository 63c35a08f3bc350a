"""`kiosk-provision pin`: set, replace or remove one technician's service PIN.

Owns: the `[[service.technicians]]` entries of an existing config (id + PBKDF2 hash of the
PIN), edited atomically with a backup and checked by `kiosk.config` before it replaces the
file (a field config refuses the demo PIN). The PIN never goes on a command line: it comes
from `--pin-file FILE`, $KIOSK_PROVISION_PIN, or a prompt without echo (asked twice).
Setting the id `default` replaces an older config's single `ui.service_pin_hash`.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk import exitcodes
from kiosk.config import LEGACY_TECHNICIAN_ID, TECHNICIAN_ID_RE, ConfigError
from kiosk.core.pin import hash_pin, pin_problem
from kiosk.textfile import say
from provisioning.files import backup, command_config, write_config_checked
from provisioning.init import ENV_PIN, read_pin_file

__all__ = ["add_parser", "cmd_pin", "run_pin"]


def _new_pin(
    args: argparse.Namespace, ask_secret: Callable[[str], str], out: Callable[[str], None]
) -> str | None:
    """The PIN from --pin-file, the environment or the prompt; None (said) when unusable."""
    if args.pin_file:
        try:
            pin, where = read_pin_file(Path(args.pin_file)), f"--pin-file {args.pin_file}"
        except ValueError as e:
            out(say("pin_file_error", error=e))
            return None
    elif os.environ.get(ENV_PIN) is not None:
        pin, where = os.environ[ENV_PIN].strip(), f"${ENV_PIN}"
    elif args.interactive or sys.stdin.isatty():
        for _ in range(3):
            pin = ask_secret("Service PIN 维护密码 (6-12 digits): ").strip()
            problem = pin_problem(pin)
            if problem is not None:
                out(f"  {problem}")
                continue
            if ask_secret("Repeat the PIN 再输入一次: ").strip() != pin:
                out("  the PINs differ, try again 两次输入不一致")
                continue
            return pin
        out(say("no_usable_pin"))
        return None
    else:
        out(say("pin_no_terminal", env=ENV_PIN))
        return None
    problem = pin_problem(pin)
    if problem is not None:
        out(say("pin_problem", where=where, problem=problem))
        return None
    return pin


def run_pin(
    args: argparse.Namespace,
    *,
    ask_secret: Callable[[str], str] = getpass.getpass,
    out: Callable[[str], None] = print,
) -> int:
    if not TECHNICIAN_ID_RE.match(args.id):
        out(say("bad_technician_id", id=repr(args.id)))
        return exitcodes.USAGE
    loaded = command_config(args.config)
    if loaded is None:
        return exitcodes.USAGE
    path, _cfg = loaded
    raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    service = raw.setdefault("service", {})
    techs = [t for t in service.get("technicians", []) if t.get("id") != args.id]
    if args.id == LEGACY_TECHNICIAN_ID:
        raw.get("ui", {}).pop("service_pin_hash", None)
    if args.remove:
        action = "removed"
    else:
        pin = _new_pin(args, ask_secret, out)
        if pin is None:
            return exitcodes.USAGE
        techs.append({"id": args.id, "pin_hash": hash_pin(pin)})
        action = "PIN set (only its hash is kept)"
    service["technicians"] = techs
    kept = backup(path)
    try:
        write_config_checked(path, raw)
    except ConfigError as e:
        if kept is not None:
            kept.unlink(missing_ok=True)
        out(say("config_unchanged"))
        for issue in e.issues:
            out(f"  {issue.key}: {issue.problem.text()}")
        return exitcodes.USAGE
    out(f"technician {args.id}: {action} in {path}")
    if kept is not None:
        out(f"previous config kept as {kept}")
    return exitcodes.OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "pin",
        allow_abbrev=False,
        help="set or remove a technician's service PIN (never on the command line)",
        description="Set, replace (or with --remove delete) the service PIN of one technician "
        "in [[service.technicians]]. The PIN is read from --pin-file, $" + ENV_PIN + ", or "
        "asked for twice without echo.",
    )
    p.add_argument(
        "--config", metavar="PATH", help="default $KIOSK_CONFIG or /etc/kiosk/kiosk.toml"
    )
    p.add_argument("--id", required=True, metavar="ID", help="the technician's id, e.g. T0042")
    p.add_argument("--pin-file", metavar="FILE", help="read the PIN from the first line of FILE")
    p.add_argument("--remove", action="store_true", help="remove this technician")
    p.add_argument("--interactive", action="store_true", help="prompt even without a tty")
    p.set_defaults(func=cmd_pin)


def cmd_pin(args: argparse.Namespace) -> int:
    return run_pin(args)

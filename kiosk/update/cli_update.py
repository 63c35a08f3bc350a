"""`kiosk release ...`, `kiosk update ...` and `kiosk supervise`: the commands of updates.

Owns: their arguments and exit codes (0 ok, 1 refused or failed, 2 usage or config). The work
is kiosk/update/release.py (build, verify), installer.py (stage) and supervisor.py (run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from kiosk import __version__, exitcodes
from kiosk.config import KioskConfig, load_config, resolve_config_path
from kiosk.textfile import say, worded
from kiosk.update import supervisor
from kiosk.update.installer import InstallError, Staging, fetch_and_stage
from kiosk.update.release import (
    ReleaseError,
    build_release,
    generate_release_key,
    load_release_public_key,
    verify_release,
)
from kiosk.update.wheelhouse import WheelhouseError

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    rel = sub.add_parser("release", help="build and verify signed releases", parents=[common])
    rs = rel.add_subparsers(dest="release_command", metavar="ACTION", required=True)
    kg = rs.add_parser("keygen", help="a new release key pair (keep the private one offline)")
    kg.add_argument("private", type=Path, help="private key file to create (PEM, 0600)")
    kg.add_argument("public", type=Path, help="public key file (PEM): pin it in the cabinets")
    kg.set_defaults(func=cmd_release_keygen)
    b = rs.add_parser("build", help="build a release of a kiosk source tree and sign it")
    b.add_argument("out", type=Path, help="the release directory (new)")
    b.add_argument("--key", type=Path, required=True, help="the release private key (PEM)")
    b.add_argument("--project", type=Path, default=Path("."), help="source tree (default .)")
    b.add_argument("--constraints", type=Path, help="default: PROJECT/constraints.txt")
    b.add_argument("--notes", default="", help="release notes (one line)")
    b.add_argument("--platform", action="append", default=[], help="target platform tag")
    b.add_argument("--python-version", help="target Python, e.g. 3.11 (with --platform)")
    b.add_argument("--find-links", action="append", default=[], type=Path, metavar="DIR")
    b.add_argument("--no-index", action="store_true", help="offline: only --find-links")
    b.set_defaults(func=cmd_release_build)
    v = rs.add_parser("verify", help="check a release's signature and every file", parents=[common])
    v.add_argument("dir", type=Path)
    v.add_argument("--public-key", type=Path, help="default: update.release_public_key")
    v.set_defaults(func=cmd_release_verify)

    up = sub.add_parser("update", help="install a release on this cabinet", parents=[common])
    us = up.add_subparsers(dest="update_command", metavar="ACTION", required=True)
    ap = us.add_parser(
        "apply", help="verify, install and stage a release (switches when idle)", parents=[common]
    )
    ap.add_argument(
        "dir",
        help="the release directory (e.g. on a USB stick), or its https:// URL (fetched with "
        "resume into UPDATE_ROOT/downloads, the signature checked first)",
    )
    ap.add_argument(
        "--now",
        action="store_true",
        help="the kiosk is stopped: switch at the supervisor's next start",
    )
    ap.set_defaults(func=cmd_update_apply)
    st = us.add_parser("status", help="the update state and its history", parents=[common])
    st.set_defaults(func=cmd_update_status)
    ins = us.add_parser(
        "install-supervisor",
        help="copy the supervisor (standard library only) to UPDATE_ROOT/supervisor.py",
        parents=[common],
    )
    ins.set_defaults(func=cmd_install_supervisor)

    sv = sub.add_parser(
        "supervise",
        help="run the current version under the update supervisor (kiosk/update/supervisor.py)",
        add_help=False,
    )
    sv.add_argument("rest", nargs=argparse.REMAINDER)
    sv.set_defaults(func=lambda a: supervisor.main(a.rest))


def _cfg(args: argparse.Namespace) -> KioskConfig:
    return load_config(resolve_config_path(getattr(args, "config", None)))


def cmd_release_keygen(args: argparse.Namespace) -> int:
    try:
        kid = generate_release_key(args.private, args.public)
    except FileExistsError:
        print(say("release_key_exists", file=args.private), file=sys.stderr)
        return exitcodes.USAGE
    print(f"release key {kid}: private {args.private} (keep offline), public {args.public}")
    return exitcodes.OK


def cmd_release_build(args: argparse.Namespace) -> int:
    try:
        rel = build_release(
            args.out,
            key=args.key,
            project=args.project.resolve(),
            constraints=args.constraints,
            notes=args.notes,
            platforms=args.platform,
            python_version=args.python_version,
            find_links=args.find_links,
            no_index=args.no_index,
        )
    except (ReleaseError, WheelhouseError) as e:
        print(say("release_build_failed", error=e), file=sys.stderr)
        return exitcodes.FAIL
    print(
        f"release {rel.version} in {rel.path}: {len(rel.files)} files, "
        f"{rel.size / 1e6:.1f} MB, store schema {rel.store_schema_min}..{rel.store_schema_max}, "
        f"signed by release key {rel.key_id}"
    )
    return exitcodes.OK


def _refused(e: Exception) -> str:
    """A refused release in the user's words: a ReleaseError's own key (its cause's, for an
    InstallError that wraps one), else its English message."""
    cause = e if isinstance(e, ReleaseError) else e.__cause__
    if isinstance(cause, ReleaseError) and cause.key:
        return say("refused", error=say(cause.key, **worded(cause.fields)))
    return say("refused", error=e)


def cmd_release_verify(args: argparse.Namespace) -> int:
    try:
        path = args.public_key or _cfg(args).update.release_public_key
        if path is None:
            print(say("no_release_key"))
            return exitcodes.USAGE
        rel = verify_release(args.dir, load_release_public_key(path))
    except ReleaseError as e:
        print(_refused(e), file=sys.stderr)
        return exitcodes.FAIL
    print(
        f"release {rel.version} OK: signed by {rel.key_id}, {len(rel.files)} files match, "
        f"store schema {rel.store_schema_min}..{rel.store_schema_max}"
    )
    if rel.notes:
        print(f"  notes: {rel.notes}")
    return exitcodes.OK


def cmd_update_apply(args: argparse.Namespace) -> int:
    cfg = _cfg(args)
    if cfg.update.release_public_key is None:
        print(say("release_key_unset"))
        return exitcodes.USAGE
    try:
        s = Staging.for_config(cfg)
        state = fetch_and_stage(args.dir, s, ca_file=cfg.sync.ca_file, switch_now=args.now)
    except (InstallError, ReleaseError) as e:
        print(_refused(e), file=sys.stderr)
        return exitcodes.FAIL
    except (json.JSONDecodeError, UnicodeDecodeError):  # the update state file is damaged
        print(say("update_state_bad", file=cfg.update.root / supervisor.STATE), file=sys.stderr)
        return exitcodes.FAIL
    version = state["pending"]["version"]
    when = "at the supervisor's next start" if args.now else "when the kiosk is idle"
    print(f"version {version} staged; it starts {when}, on trial until healthy")
    return exitcodes.OK


def cmd_update_status(args: argparse.Namespace) -> int:
    cfg = _cfg(args)
    try:
        state = supervisor.load_state(cfg.update.root)
    except (json.JSONDecodeError, UnicodeDecodeError):
        print(say("update_state_bad", file=cfg.update.root / supervisor.STATE), file=sys.stderr)
        return exitcodes.FAIL
    print(f"this command: kiosk {__version__}")
    print(
        f"running {state['running']}, phase {state['phase']}, current -> "
        f"{supervisor.current_target(cfg.update.root)}"
    )
    if state["pending"]:
        print(f"pending {json.dumps(state['pending'], ensure_ascii=False)}")
    if state["last_result"]:
        print(f"last result {json.dumps(state['last_result'], ensure_ascii=False)}")
    for h in state["history"][-20:]:
        extra = {k: v for k, v in h.items() if k not in ("seq", "at", "step", "version")}
        print(f"  #{h['seq']} {h['step']} {h['version']} {json.dumps(extra, ensure_ascii=False)}")
    return exitcodes.OK


def cmd_install_supervisor(args: argparse.Namespace) -> int:
    cfg = _cfg(args)
    cfg.update.root.mkdir(parents=True, exist_ok=True)
    dest = cfg.update.root / "supervisor.py"
    shutil.copyfile(supervisor.__file__, dest)
    print(f"wrote {dest}: run it with the system python3 (docs/deploy.md)")
    return exitcodes.OK

"""`kiosk-provision install-service`: put the systemd unit in place and say what else to run.

Owns: turning provisioning/kiosk.service into the unit for this kiosk (config path, data dir,
executable, user; by default the update supervisor runs the kiosk, `--plain` runs the
executable itself) and the instructions (service user in the dialout group, data dir ownership,
enable). Never runs systemctl, useradd or chown itself: it prints them for the technician, so it
is safe to run anywhere and in tests (--dest).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from kiosk import exitcodes
from kiosk.textfile import say
from provisioning.files import backup, command_config, write_atomic

__all__ = ["UNIT_TEMPLATE", "add_parser", "cmd_install_service", "render_unit"]

UNIT_TEMPLATE = Path(__file__).with_name("kiosk.service")
DEFAULT_DEST = Path("/etc/systemd/system")


def render_unit(
    config_path: Path,
    data_dir: Path,
    exe: str,
    user: str = "kiosk",
    watchdog_s: int = 30,
    update_root: Path | None = None,
) -> str:
    """The unit; with `update_root`, systemd runs the update supervisor (UPDATE_ROOT/
    supervisor.py with the system Python, no kiosk code), which runs UPDATE_ROOT/current's
    `kiosk run` and commits or rolls back new versions (docs/deploy.md)."""
    out = []
    for line in UNIT_TEMPLATE.read_text(encoding="utf-8").splitlines():
        if line.startswith("ExecStart=") and update_root is not None:
            line = (
                f"ExecStart=/usr/bin/python3 -I {update_root}/supervisor.py --config "
                f"{config_path} -- run --config {config_path}"
            )
        elif line.startswith("ExecStart="):
            line = f"ExecStart={exe} run --config {config_path}"
        elif line.startswith("Environment=KIOSK_CONFIG="):
            line = f"Environment=KIOSK_CONFIG={config_path}"
        elif line.startswith("ReadWritePaths="):
            line = f"ReadWritePaths={data_dir}" + (f" {update_root}" if update_root else "")
        elif line.startswith("User="):
            line = f"User={user}"
        elif line.startswith("Group="):
            line = f"Group={user}"
        elif line.startswith("WatchdogSec="):
            line = f"WatchdogSec={watchdog_s}"
        out.append(line)
    return "\n".join(out) + "\n"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("install-service", help="write the systemd unit (no systemctl calls)")
    p.add_argument("--config", metavar="PATH")
    p.add_argument(
        "--dest",
        metavar="DIR",
        default=str(DEFAULT_DEST),
        help="unit directory (default %(default)s)",
    )
    p.add_argument("--user", default="kiosk", help="service user (default %(default)s)")
    p.add_argument(
        "--exe",
        help="the kiosk executable, written as given even if it does not exist yet "
        "(default: `kiosk` next to this Python, else the first on PATH)",
    )
    p.add_argument("--watchdog", type=int, default=30, metavar="S", help="WatchdogSec")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--supervised",
        dest="plain",
        action="store_false",
        default=False,
        help="the default: systemd runs the update supervisor (update.root/supervisor.py: "
        "`kiosk update install-supervisor`), which runs update.root/current and commits or "
        "rolls back new versions",
    )
    mode.add_argument(
        "--plain",
        action="store_true",
        help="systemd runs --exe itself: no update ever switches (a staged release stays "
        "staged); for a bench or a cabinet that is never updated in place",
    )
    p.set_defaults(func=cmd_install_service)


def cmd_install_service(args: argparse.Namespace) -> int:
    loaded = command_config(args.config)
    if loaded is None:
        return exitcodes.USAGE
    path, cfg = loaded[0].resolve(), loaded[1]
    if args.exe:  # exactly what was asked for: the path may not exist yet (a new release)
        exe = str(Path(args.exe).absolute())
        if not Path(exe).exists():
            print(f"note: {exe} does not exist yet; install it there before starting the service")
    else:
        exe = str(Path(sys.executable).with_name("kiosk"))
        if not Path(exe).exists():
            exe = shutil.which("kiosk") or exe
    root = None if args.plain else cfg.update.root
    unit = render_unit(path, cfg.store.data_dir, exe, args.user, args.watchdog, root)
    dest = Path(args.dest) / "kiosk.service"
    kept = backup(dest)
    try:
        write_atomic(dest, unit.encode(), 0o644)
    except PermissionError:
        print(say("unit_unwritable", file=dest))
        return exitcodes.FAIL
    u, d = args.user, cfg.store.data_dir
    print(f"wrote {dest}" + (f" (previous kept as {kept})" if kept else ""))
    if root is None:
        print("note: the plain unit never switches versions: a staged release stays staged")
    print("now run, as root:")
    print(
        f"  useradd --system --home-dir {d} --shell /usr/sbin/nologin --groups "
        f"dialout,video,render,input,tty {u}   # once"
    )
    print(f"  install -d -o {u} -g {u} -m 0700 {d}")
    print(f"  chown root:{u} {path} && chmod 0640 {path}   # the service reads its config")
    ident = f"{path.parent}/device-key.pem {path.parent}/device-secret"
    print(f"  chown {u}:{u} {ident}   # after register; they stay mode 0600")
    if root is not None:
        if not (root / "current").exists():
            print(
                f"  ln -sfn versions/<version> {root}/current   # the venv installed as "
                f"{root}/versions/<version>"
            )
        print(f"  {exe} update install-supervisor --config {path}   # writes {root}/supervisor.py")
        print(f"  chown -R {u}:{u} {root}   # the kiosk switches versions there when idle")
    print("  systemctl daemon-reload && systemctl enable --now kiosk.service")
    print("  journalctl -u kiosk -f    # watch it start")
    return exitcodes.OK

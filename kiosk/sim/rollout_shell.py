"""The province simulator's releases and rollouts: `kiosk province-sim release publish DIR`,
`rollout start|pause|resume|abort|status`, and the driver that `province-sim run` ticks.

Owns: the files (`<data>/releases/<version>/`, a verified copy of a release; `<data>/rollout.json`,
the one rollout and its fleet, replaced whole: write + fsync + rename) and the tick: read the
newest `reported` of each cabinet from the province's database, step the rollout
(kiosk/sim/rollout.py, which decides), send `install_release` to the cabinets it names, save.
The commands only edit the file; the running simulator picks the change up at its next tick.
Serving the release files is the province's web server's job: `--url` names where
`releases/<version>/` is served over HTTPS.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from kiosk import exitcodes
from kiosk.sim.rollout import (
    FleetCabinet,
    Rollout,
    RolloutTarget,
    parse_duration,
    parse_fraction,
    parse_waves,
    step,
)

__all__ = ["RolloutDriver", "add_rollout_parsers", "read_rollout"]

ROLLOUT_FILE = "rollout.json"
TICK_S = 5.0


class CommandSender(Protocol):
    def send_command(
        self, kiosk_id: str, command: str, args: dict[str, Any] | None = None
    ) -> object: ...


def _save(data_dir: Path, rollout: Rollout, fleet: list[FleetCabinet]) -> None:
    raw = dataclasses.asdict(rollout)
    raw["target"] = {k: sorted(v) for k, v in raw["target"].items()}
    raw["failed"] = sorted(rollout.failed)
    raw["fleet"] = [dataclasses.asdict(c) for c in fleet]
    tmp = data_dir / f".{ROLLOUT_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(raw, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, data_dir / ROLLOUT_FILE)


def _load(data_dir: Path) -> tuple[Rollout, list[FleetCabinet]] | None:
    try:
        raw = json.loads((data_dir / ROLLOUT_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    fleet = [FleetCabinet(**c) for c in raw.pop("fleet", [])]
    raw["target"] = RolloutTarget(**{k: frozenset(v) for k, v in raw["target"].items()})
    raw["failed"] = frozenset(raw["failed"])
    raw["waves"] = tuple(raw["waves"])
    return Rollout(**raw), fleet


def read_rollout(data_dir: Path) -> tuple[Rollout, list[FleetCabinet]] | None:
    """The rollout in `<data>/rollout.json` and its fleet (None: no rollout)."""
    return _load(data_dir)


def latest_updates(data_dir: Path) -> dict[str, dict[str, Any]]:
    """kiosk id -> `update` of its newest `reported` record (own read-only connection)."""
    from kiosk.sim.province import DB_FILENAME

    db = data_dir / DB_FILENAME
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT kiosk_id, body FROM events WHERE id IN "
            "(SELECT MAX(id) FROM events WHERE kind = 'reported' GROUP BY kiosk_id)"
        ).fetchall()
    finally:
        conn.close()
    out: dict[str, dict[str, Any]] = {}
    for kiosk_id, body in rows:
        update = json.loads(body).get("update")
        if isinstance(update, dict):
            out[str(kiosk_id)] = update
    return out


class RolloutDriver:
    """Ticks the rollout in `<data>/rollout.json` every TICK_S while the simulator runs."""

    def __init__(self, sender: CommandSender, data_dir: Path, tick_s: float = TICK_S) -> None:
        self.sender, self.data_dir, self.tick_s = sender, data_dir, tick_s
        self._stop = threading.Event()

    def tick(self, now: float | None = None) -> list[str]:
        loaded = _load(self.data_dir)
        if loaded is None:
            return []
        rollout, fleet = loaded
        new, send = step(rollout, fleet, latest_updates(self.data_dir), now or time.time())
        for kiosk_id in send:
            self.sender.send_command(kiosk_id, "install_release", {"url": new.url})
        if new != rollout:
            _save(self.data_dir, new, fleet)
        return send

    def start(self) -> RolloutDriver:
        def run() -> None:
            while not self._stop.wait(self.tick_s):
                try:
                    self.tick()
                except Exception as e:  # a bad file must not stop the simulator
                    print(f"province-sim rollout: {type(e).__name__}: {e}", file=sys.stderr)

        threading.Thread(target=run, name="rollout", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


# --- the commands -----------------------------------------------------------------------------


def add_rollout_parsers(sub: Any, data_dir_arg: Any) -> None:
    rel = sub.add_parser("release", help="releases the province offers (kiosk release build)")
    rs = rel.add_subparsers(dest="release_command", metavar="ACTION", required=True)
    pub = rs.add_parser("publish", help="verify a release and copy it to DATA/releases/<version>")
    data_dir_arg(pub)
    pub.add_argument("dir", type=Path)
    pub.add_argument("--public-key", type=Path, required=True, help="the release public key")
    pub.set_defaults(func=cmd_release_publish)

    ro = sub.add_parser("rollout", help="roll a published release out in waves")
    rs = ro.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)
    st = rs.add_parser("start", help="start a rollout (replaces a finished or aborted one)")
    data_dir_arg(st)
    st.add_argument("version")
    st.add_argument("--url", required=True, help="https:// where releases/<version>/ is served")
    st.add_argument("--waves", default="1%,10%,50%,100%")
    st.add_argument("--soak", default="10m", help="healthy this long before the next wave")
    st.add_argument("--max-failures", default="2%", help="abort above this share failed")
    st.add_argument("--fleet", type=Path, required=True, help="CSV: kiosk_id,site_type,county")
    st.add_argument("--kiosk", action="append", default=[], help="target only these ids")
    st.add_argument("--site-type", action="append", default=[], help="target a site type")
    st.add_argument("--county", action="append", default=[], help="target an area code")
    st.set_defaults(func=cmd_rollout_start)
    for name in ("pause", "resume", "abort", "status"):
        p = rs.add_parser(name, help=f"{name} the rollout")
        data_dir_arg(p)
        p.set_defaults(func=cmd_rollout_change, change=name)


def _dir(args: argparse.Namespace) -> Path:
    from kiosk.sim.cli_province import DEFAULT_DATA_DIR

    return Path(getattr(args, "data_dir", None) or DEFAULT_DATA_DIR).expanduser()


def cmd_release_publish(args: argparse.Namespace) -> int:
    from kiosk.update.release import ReleaseError, load_release_public_key, verify_release

    try:
        rel = verify_release(args.dir, load_release_public_key(args.public_key))
    except ReleaseError as e:
        print(f"REFUSED: {e}", file=sys.stderr)
        return exitcodes.FAIL
    dest = _dir(args) / "releases" / rel.version
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(rel.path, dest)
    print(f"release {rel.version} published at {dest}; serve it over HTTPS, then rollout start")
    return exitcodes.OK


def cmd_rollout_start(args: argparse.Namespace) -> int:
    data = _dir(args)
    if not (data / "releases" / args.version).is_dir():
        print(f"release {args.version} is not published (release publish DIR)", file=sys.stderr)
        return exitcodes.USAGE
    with args.fleet.open(encoding="utf-8") as f:
        fleet = [
            FleetCabinet(r[0].strip(), *(x.strip() for x in r[1:3])) for r in csv.reader(f) if r
        ]
    fleet = [c for c in fleet if c.kiosk_id and c.kiosk_id != "kiosk_id"]
    try:
        rollout = Rollout(
            version=args.version,
            url=args.url.rstrip("/") + "/",
            waves=parse_waves(args.waves),
            soak_s=parse_duration(args.soak),
            max_failures=parse_fraction(args.max_failures),
            target=RolloutTarget(
                frozenset(args.kiosk), frozenset(args.site_type), frozenset(args.county)
            ),
        )
    except ValueError as e:
        print(f"rollout: {e}", file=sys.stderr)
        return exitcodes.USAGE
    current = _load(data)
    if current is not None and current[0].status in ("running", "paused"):
        print(f"rollout of {current[0].version} is {current[0].status}: abort it first")
        return exitcodes.FAIL
    _save(data, rollout, fleet)
    print(f"rollout of {args.version} started over {len(fleet)} cabinets (next tick)")
    return exitcodes.OK


def cmd_rollout_change(args: argparse.Namespace) -> int:
    data = _dir(args)
    loaded = _load(data)
    if loaded is None:
        print("no rollout", file=sys.stderr)
        return exitcodes.FAIL
    rollout, fleet = loaded
    change = {"pause": "paused", "resume": "running", "abort": "aborted"}.get(args.change)
    if change is not None:
        if rollout.status in ("aborted", "done"):
            print(f"rollout of {rollout.version} is {rollout.status}", file=sys.stderr)
            return exitcodes.FAIL
        reason = "aborted by hand" if change == "aborted" else rollout.reason
        rollout = dataclasses.replace(rollout, status=change, reason=reason)
        _save(data, rollout, fleet)
    print(json.dumps(rollout.summary(), ensure_ascii=False))
    return exitcodes.OK

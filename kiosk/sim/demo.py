"""`kiosk demo`: the whole world on one machine — broker, province, board emulator, kiosk.

Owns: orchestration only. It makes a work directory, a throwaway PKI and a Mosquitto on a free
loopback port (TLS, client certificates, ACL), the province simulator and its pay page (in this
process), the board emulator on a pty (child process), a kiosk config pointing at all of them,
seeds the store, and then either
- runs `kiosk run --config <generated>` as a child (a window when $DISPLAY is set, else
  `--headless`) and prints each order's pay URL and the province's running sales summary, or
- with `--headless` (or no display), runs the scripted shopper of kiosk.sim.demo_script against a
  kiosk built in this process, prints what happened and exits.
Ctrl-C / SIGTERM stops everything: children terminated (then killed), broker stopped, pty
symlink removed, nothing left running. Never touches ~/.local/share or /tmp/kiosk-board.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["Demo", "main", "register"]

KIOSK_ID = "AH-340100-0001"
SUMMARY_EVERY_S = 5.0
EMULATOR_TIME_SCALE = 0.3
WINDOW = (540, 960)

Say = Callable[[str], None]


class Interrupted(BaseException):
    """SIGINT / SIGTERM arrived: stop everything. A BaseException, like KeyboardInterrupt, so
    that no `except Exception` on the way (a screenshot that is "never worth failing the demo
    for") swallows it and lets the demo run on to exit 0."""


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common_parent: argparse.ArgumentParser,
) -> None:
    """Add `demo` to the kiosk command's subparsers."""
    p = subparsers.add_parser(
        "demo",
        help="run the whole demo: broker, province simulator, board emulator and the kiosk",
        parents=[common_parent],
        description="Everything on this machine, in a temporary directory; Ctrl-C stops it.",
    )
    p.add_argument(
        "--headless",
        action="store_true",
        help="no window: a scripted shopper makes three purchases and the demo exits "
        "(automatic when $DISPLAY is not set)",
    )
    p.add_argument("--workdir", type=Path, help="work directory (default: a new temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the work directory at the end")
    p.add_argument("--timeout", type=float, default=40.0, help="headless: per-step timeout (s)")
    p.add_argument(
        "--board",
        choices=("kiosk", "vmc"),
        default="kiosk",
        help="the emulated cabinet: kiosk (our own control board, default) or vmc (a vending "
        "machine controller that polls the kiosk, docs/boards/vmc.md)",
    )
    p.add_argument(
        "--record-mqtt",
        type=Path,
        metavar="FILE",
        help="record every MQTT message crossing the demo's broker (a read-only audit "
        "subscriber on #) and write them to FILE as JSON lines at the end (the tests check "
        "them against docs/mqtt-api.yaml)",
    )
    p.set_defaults(func=cmd_demo)


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Children die with the demo even if it is killed with SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Demo:
    def __init__(
        self,
        workdir: Path | None,
        *,
        headless: bool,
        keep: bool = False,
        say: Say | None = None,
        timeout: float = 40.0,
        board: str = "kiosk",
        record_mqtt: Path | None = None,
    ) -> None:
        if board not in ("kiosk", "vmc"):
            raise ValueError(f"unknown board {board!r}: kiosk or vmc")
        self.board = board
        self.own_dir = workdir is None
        self.record_mqtt = record_mqtt
        self.tap: Any = None  # kiosk.sim.mqtt_tap.BrokerTap with --record-mqtt
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="kiosk-demo-")).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.headless = headless
        # headless: the screenshots and logs are the result, so the directory stays
        self.keep = keep or not self.own_dir or headless
        self.timeout = timeout
        self._say = say or (lambda s: print(s, flush=True))
        self._say_lock = threading.Lock()
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.pty = self.dir / "board"
        self.control = self.dir / "board.ctl"
        self.screens = self.dir / "screens"
        self.config_file = self.dir / "kiosk.toml"
        self.data_dir = self.dir / "kiosk-data"
        self.province_dir = self.dir / "province"
        self.broker: Any = None
        self.sim: Any = None
        self.page: Any = None
        self.secret = b""
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._log_stream: Any = None

    def say(self, text: str) -> None:
        with self._say_lock:
            self._say(text)

    # --- building the world -------------------------------------------------------------------

    def _child(self, name: str, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
        log = open(self.dir / log_name, "ab")  # noqa: SIM115 - the child owns it from here
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kiosk.cli", *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.dir,
                start_new_session=True,  # our Ctrl-C is ours to pass on, in order
                preexec_fn=_pdeathsig,
            )
        finally:
            log.close()
        self.children.append((name, proc))
        return proc

    def setup(self) -> None:
        from kiosk.log import setup_logging
        from kiosk.sim.broker import Mosquitto, Pki
        from kiosk.sim.mqtt_tap import AUDIT_USER, BrokerTap

        # This process's log lines (province, pay page, headless kiosk) go to a file; the
        # console is for what a person watching the demo wants to see.
        self._log_stream = open(self.dir / "demo.log", "a", encoding="utf-8")  # noqa: SIM115
        setup_logging("info", "kv", self._log_stream)
        from kiosk.sim.paypage import PayPageServer
        from kiosk.sim.province import (
            PUBLIC_KEY_FILE,
            BrokerSettings,
            ProvinceSimulator,
            load_or_create_signing_key,
        )
        from kiosk.sim.province_keys import ROOT_PUBLIC_FILE, load_or_create_root_key

        t0 = time.monotonic()
        # 1. PKI and broker
        pki = Pki(self.dir / "pki")
        kiosk_cert = pki.client(KIOSK_ID)
        prov_cert = pki.backend_client()
        audit = (AUDIT_USER,) if self.record_mqtt is not None else ()
        self.broker = Mosquitto(self.dir / "broker", pki, audit_identities=audit)
        self.broker.start()
        if self.record_mqtt is not None:  # before anyone else connects: every message
            cert = pki.backend_client(AUDIT_USER)
            assert self.broker.backend_port is not None
            self.tap = BrokerTap(
                self.broker.backend_port, pki.ca_file, cert.cert_file, cert.key_file
            ).start()
        # 2. device secret shared by kiosk and province, province keys, simulator, pay page
        secret_file = self.dir / "device-secret"
        secret_file.write_text(secrets.token_hex(32) + "\n")
        secret_file.chmod(0o600)
        self.secret = secret_file.read_bytes()
        key = load_or_create_signing_key(self.province_dir)
        root_key = load_or_create_root_key(self.province_dir)  # signs key sets only
        device_secrets = {KIOSK_ID: self.secret}
        self.sim = ProvinceSimulator(
            BrokerSettings(
                url=self.broker.province_url,
                ca_file=pki.ca_file,
                cert_file=prov_cert.cert_file,
                key_file=prov_cert.key_file,
                client_id="province-demo",
            ),
            self.province_dir,
            device_secrets,
            key,
            root_key=root_key,
            # One consumer: a plain subscription. Mosquitto restores it after the demo's broker
            # restart while a shared one is lost (docs/scale.md), which left the third sale
            # waiting ~30 s for the kiosk's resend.
            shared_subscription=False,
        )
        self.page = PayPageServer(device_secrets, self.sim.confirm_payment, port=0)
        self.sim.start()
        self.page.start()
        # 3. the board emulator on a pty
        self._child(
            "emulator",
            [
                "emulator",
                "--pty",
                str(self.pty),
                "--control",
                str(self.control),
                "--log",
                str(self.dir / "board-physical.jsonl"),
                "--memory-file",
                str(self.dir / "board-memory.json"),
                "--time-scale",
                str(EMULATOR_TIME_SCALE),
                "--stock",
                "10",
                "--protocol",
                self.board,
            ],
            "emulator.log",
        )
        # 4. the kiosk config and its store
        self._write_config(
            kiosk_cert,
            pki.ca_file,
            self.province_dir / PUBLIC_KEY_FILE,
            self.province_dir / ROOT_PUBLIC_FILE,
        )
        seed = subprocess.run(
            [
                sys.executable,
                "-m",
                "kiosk.cli",
                "store",
                "seed-demo",
                "--config",
                str(self.config_file),
            ],
            capture_output=True,
            text=True,
            cwd=self.dir,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            timeout=60,
        )
        if seed.returncode != 0:
            raise RuntimeError(f"store seed-demo failed:\n{seed.stdout}{seed.stderr}")
        self._wait_for(lambda: self.pty.exists() and self.control.exists(), 10, "the emulator")
        if not self.sim.wait_connected(10):
            raise RuntimeError("the province simulator did not connect to the broker")
        self.say(f"kiosk demo — work directory {self.dir}")
        self.say(f"  broker          {self.broker.url} (TLS, client certificates, ACL)")
        self.say(f"  province        data {self.province_dir} (kid {self.sim.kid})")
        self.say(f"  pay page        {self.page.url}")
        what = "VMC emulator  " if self.board == "vmc" else "board emulator"
        self.say(f"  {what}  {self.pty} (control {self.control}, time x{EMULATOR_TIME_SCALE})")
        self.say(f"  kiosk           {KIOSK_ID}, config {self.config_file}")
        self.say(
            f"  service PIN     {self.service_pin} (technician demo; hold the top-left corner 3 s)"
        )
        self.say(f"  kiosk data      {self.data_dir}")
        self.say(f"  ready in {time.monotonic() - t0:.1f} s")

    def _wait_for(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            for name, proc in self.children:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} (see {self.dir})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def _write_config(self, cert: Any, ca: Path, province_key: Path, root_key: Path) -> None:
        def q(v: object) -> str:
            return json.dumps(str(v), ensure_ascii=False)  # a TOML basic string

        from kiosk.core.pin import DEMO_PIN, hash_pin

        w, h = WINDOW
        protocol, baud = ("vmc", 57600) if self.board == "vmc" else ("kiosk", 115200)
        # A PIN of this demo's own: the config is mqtts://, which refuses the published demo PIN.
        self.service_pin = DEMO_PIN
        while self.service_pin == DEMO_PIN:
            self.service_pin = f"{secrets.randbelow(10**6):06d}"
        pin_hash = hash_pin(self.service_pin, iterations=10_000)
        self.config_file.write_text(
            f"""# written by `kiosk demo`: everything on this machine, in {self.dir}
[identity]
kiosk_id = {q(KIOSK_ID)}
site_name = "合肥市第一人民医院 门诊大厅 (demo)"
site_type = "hospital"
area_code = "340100"
address = "安徽省合肥市庐阳区淮河路390号"

[hardware]
driver = "serial"
protocol = "{protocol}"
port = {q(self.pty)}
baud = {baud}
cabinet = "spiral"
boards = [0]
rows = 6
cols = 10
default_capacity = 10

[sync]
broker_url = {q(self.broker.url)}
mqtt_version = "5"
ca_file = {q(ca)}
cert_file = {q(cert.cert_file)}
key_file = {q(cert.key_file)}
province_public_key = {q(province_key)}
province_root_key = {q(root_key)}
keepalive_s = 10

[payments]
pay_url_base = {q(self.page.url)}
device_secret_file = {q(self.dir / "device-secret")}
payment_window_s = 120
max_cart_items = 5

[ui]
width = {w}
height = {h}
orientation = "portrait"
language = "zh"
fullscreen = false
idle_timeout_s = 60
dim_after_s = 300

[[service.technicians]]
id = "demo"
pin_hash = {q(pin_hash)}

[store]
data_dir = {q(self.data_dir)}

[logging]
level = "info"
format = "kv"
""",
            encoding="utf-8",
        )

    # --- watching -----------------------------------------------------------------------------

    def sale_records(self) -> int:
        return int(self.sim.event_count(KIOSK_ID, "sale"))

    def province_summary(self) -> str:
        rep = self.sim.sales_report()
        received, dups, rejected = self.sim.receipts(KIOSK_ID)
        return (
            str(rep.format())
            + f"\nProvince receipts: {received} records received, {dups} duplicates dropped, "
            f"{rejected} rejected; {self.sale_records()} sale records"
        )

    def short_summary(self) -> str:
        rep = self.sim.sales_report()
        orders = sum(k[1] for k in rep.by_kiosk)
        items = sum(k[2] for k in rep.by_kiosk)
        received, _, _ = self.sim.receipts(KIOSK_ID)
        return (
            f"[province] {orders} sale(s), {items} item(s), ¥{rep.total_fen / 100:.2f} delivered, "
            f"¥{rep.refund_due_fen / 100:.2f} refunds due, {received} records received"
        )

    def chain_ok(self) -> tuple[bool, str]:
        reports = self.sim.chain_reports()
        lines = ["Ledger chain check (province):"]
        ok = bool(reports)
        for c in reports:
            lines.append(
                f"  {c.kiosk_id}: {c.records} sale records, "
                f"{'OK' if c.ok else f'{len(c.problems)} problem(s)'}"
            )
            ok = ok and c.ok
        return ok, "\n".join(lines)

    def _orders(self) -> list[tuple[str, str, Any]]:
        from kiosk.store.orders import order_from_dict

        db = self.data_dir / "kiosk.db"
        if not db.exists():
            return []
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
            try:
                rows = conn.execute("SELECT order_id, state, body FROM orders ORDER BY seq")
                return [(o, s, order_from_dict(json.loads(b))) for o, s, b in rows.fetchall()]
            finally:
                conn.close()
        except sqlite3.Error:
            return []

    def _watch(self) -> None:
        """Each order's pay URL as it appears, its state changes, the province's summary."""
        from kiosk.core.payment import pay_url

        states: dict[str, str] = {}
        last_summary = ""
        next_summary = time.monotonic() + SUMMARY_EVERY_S
        while not self._stop.wait(0.5):
            for order_id, state, order in self._orders():
                if states.get(order_id) == state:
                    continue
                states[order_id] = state
                if state == "awaiting_payment":
                    url = pay_url(
                        self.page.url,
                        KIOSK_ID,
                        order_id,
                        order.total_fen,
                        order.expires_at,
                        self.secret,
                    )
                    self.say(f"[kiosk] order {order_id} ¥{order.total_fen / 100:.2f}: pay at {url}")
                else:
                    self.say(f"[kiosk] order {order_id}: {state}")
            if time.monotonic() >= next_summary:
                next_summary = time.monotonic() + SUMMARY_EVERY_S
                try:
                    text = self.short_summary()
                except Exception:  # the simulator is stopping
                    continue
                if text != last_summary:
                    self.say(text)
                    last_summary = text

    def start_watch(self) -> None:
        self._monitor = threading.Thread(target=self._watch, name="demo-watch", daemon=True)
        self._monitor.start()

    # --- the two modes ------------------------------------------------------------------------

    def run_kiosk_child(self) -> int:
        """The kiosk as a child process (`kiosk run`), until Ctrl-C or until it exits."""
        windowed = not self.headless and bool(os.environ.get("DISPLAY"))
        argv = ["run", "--config", str(self.config_file)]
        if not windowed:
            argv.append("--headless")
        proc = self._child("kiosk", argv, "kiosk.log")
        self.say(
            f"kiosk running ({'in a window' if windowed else 'headless'}, log "
            f"{self.dir / 'kiosk.log'}). Buy with the mouse, open the pay URL printed below in "
            "a browser and press a pay button. Ctrl-C stops everything."
        )
        self.start_watch()
        while proc.poll() is None:
            time.sleep(0.3)
        self.say(f"kiosk exited with {proc.returncode}")
        return int(proc.returncode or 0)

    def run_script(self) -> int:
        """The scripted shopper, against a kiosk built in this process."""
        from kiosk.app import build_app
        from kiosk.config import load_config
        from kiosk.sim.demo_script import DemoWorld, script_demo
        from kiosk.sim.emulator_transports import send_control

        config = load_config(self.config_file)
        app = build_app(config, sync=True)  # the province link, as `kiosk run` has it
        try:
            app.start()
            self.start_watch()
            world = DemoWorld(
                screens_dir=self.screens,
                device_secret=self.secret,
                jam=lambda slots: send_control(
                    str(self.control), "jam " + " ".join(map(str, slots))
                ),
                unjam=lambda slots: send_control(
                    str(self.control), "unjam " + " ".join(map(str, slots))
                ),
                broker_stop=self.broker.stop,
                broker_start=self.broker.start,
                sale_records=self.sale_records,
                province_summary=self.province_summary,
                chain_ok=self.chain_ok,
                screen_size=WINDOW,
                timeout=self.timeout,
            )
            code = script_demo(app, world, self.say)
            self.say(f"screenshots: {self.screens}")
            return code
        finally:
            self._stop.set()
            app.close()

    # --- stopping -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything, in order; safe to call twice and after a partial setup."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(2)
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for _name, proc in reversed(self.children):
            try:
                proc.wait(8)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.page is not None:
            with contextlib.suppress(Exception):
                self.page.stop()
            self.page = None
        if self.sim is not None:
            with contextlib.suppress(Exception):
                self.sim.stop()
            self.sim = None
        if self.tap is not None and self.record_mqtt is not None:
            with contextlib.suppress(Exception):
                self.tap.drain()
            self.tap.stop()
            self.tap.dump(self.record_mqtt)
            self.tap = None
        if self.broker is not None:
            self.broker.stop()
        with contextlib.suppress(FileNotFoundError):
            if self.pty.is_symlink():
                self.pty.unlink()
        if self._log_stream is not None:
            import logging

            for h in list(logging.getLogger().handlers):
                if getattr(h, "stream", None) is self._log_stream:
                    logging.getLogger().removeHandler(h)
            self._log_stream.close()
            self._log_stream = None
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def pids(self) -> list[int]:
        out = [p.pid for _, p in self.children]
        if self.broker is not None and self.broker.proc is not None:
            out.append(self.broker.proc.pid)
        return out


def run_demo(
    workdir: Path | None,
    *,
    headless: bool,
    keep: bool = False,
    timeout: float = 40.0,
    board: str = "kiosk",
    record_mqtt: Path | None = None,
) -> int:
    headless = headless or not os.environ.get("DISPLAY")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    demo: Demo | None = None
    try:
        demo = Demo(
            workdir,
            headless=headless,
            keep=keep,
            timeout=timeout,
            board=board,
            record_mqtt=record_mqtt,
        )
        print(f"demo pid {os.getpid()}", flush=True)
        demo.setup()
        code = demo.run_script() if headless else demo.run_kiosk_child()
        return code
    except Interrupted as e:
        print(f"\n{e}: stopping everything", flush=True)
        return 130
    except Exception as e:
        print(f"kiosk demo: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        if demo is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            pids = demo.pids()
            t0 = time.monotonic()
            demo.close()
            closed_in = time.monotonic() - t0
            left = [p for p in pids if _alive(p)]
            print(
                f"stopped in {closed_in:.1f} s: "
                + ("nothing left running" if not left else f"STILL RUNNING: {left}")
                + (f"; work directory kept: {demo.dir}" if demo.keep else ""),
                flush=True,
            )
        for s, h in previous.items():
            signal.signal(s, h)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(
        args.workdir,
        headless=args.headless,
        keep=args.keep,
        timeout=args.timeout,
        board=getattr(args, "board", "kiosk"),
        record_mqtt=args.record_mqtt,
    )


def main(argv: Sequence[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="kiosk", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub, common)
    args = parser.parse_args(["demo", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

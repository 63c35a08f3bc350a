"""Composition root: builds the kiosk from its config, starts its threads, shuts them down.

Owns: the wiring only. Build order, so that nothing is patched after it exists: store ->
clock offset -> outbox -> serial link -> boards/cabinet -> sync bridge (kiosk.sync.bridge) ->
controller, which gets the bridge's hooks in its constructor (`on_commit`, `payment_query`,
`province_time`, `province_keys`: confirmations are verified with the sync keyring); the
bridge reads the App (its `KioskPort`) only once running. Also the App's lifecycle: start,
the systemd watchdog, close. `kiosk run` (signals, readiness, UI or headless, degraded
fallback) is kiosk/cli_run.py. Decides nothing about sales (the controller
and the core do) and never reads a secret it does not hand straight to the component that
needs it. Test features (the test payment signer, the scripted shopper) live in kiosk.sim.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kiosk import contract as ui
from kiosk import exitcodes, systemd
from kiosk.clock import Clock, SystemClock
from kiosk.config import (
    BoardConfig,
    ConfigError,
    KioskConfig,
    device_secret_problems,
    planogram_board_issues,
    refuse_in_field,
)
from kiosk.controller import Controller
from kiosk.core.planogram import Planogram
from kiosk.hardware.board import BoardDriver, BoardLink, Cabinet, SerialBoard
from kiosk.hardware.link import LinkTiming, SerialLink
from kiosk.hardware.link_group import LinkGroup
from kiosk.hardware.modbus_bus import BusSettings, ModbusBus
from kiosk.hardware.modbus_locks import LockMap, ModbusLockBoard
from kiosk.hardware.modbus_sensor import ModbusTemperatureSensor, SensorMap
from kiosk.hardware.vmc_driver import VmcBoard, VmcCommandKind
from kiosk.hardware.vmc_link import VmcLink
from kiosk.log import log_event, register_secret
from kiosk.store import Store, open_store
from kiosk.sync import messages
from kiosk.sync.apply import EXIT_RESTART
from kiosk.sync.bridge import SyncBridge
from kiosk.sync.clockoffset import ClockOffset
from kiosk.sync.outbox import Outbox, Priority
from kiosk.sync.topics import Topics
from kiosk.update.gate import (
    UpdateGate,
    gate_province,
    software_report,
    supervised,
    trial_version,
)

__all__ = [
    "EXIT_RESTART",
    "App",
    "Script",
    "build_app",
    "build_cabinet",
    "build_sensor",
    "load_device_secret",
]

Script = Callable[[Controller], int]  # a headless script: runs to its end, returns the exit code
log = logging.getLogger("kiosk.app")
UPDATE_SEQ = "update.reported_seq"  # settings: the last update step sent as events/update
UI_BEAT_S = 5.0  # the UI loop turns at least this often while a watchdog watches it


def load_device_secret(config: KioskConfig) -> bytes:
    """The device secret: the file's bytes exactly as stored, trailing newline included (see
    docs/payments.md); the province simulator reads its copy the same way
    (`kiosk.sim.province.load_device_secret`). ConfigError: payments.device_secret_file not
    set, a file that is not 64 hex digits (kiosk.config.device_secret_problems), or the
    published demo secret in a field config (kiosk.config.field_problems)."""
    path = config.payments.device_secret_file
    if path is None:  # a clear ConfigError saying what to do, never a traceback
        raise ConfigError(device_secret_problems(config, None))
    secret = path.read_bytes()
    problems = device_secret_problems(config, secret)  # not 64 hex digits
    if problems:
        raise ConfigError(problems)
    refuse_in_field(config, device_secret=secret)
    register_secret(secret)  # never in a log line from here on (kiosk.log.redact)
    return secret


def build_cabinet(
    config: KioskConfig,
    planogram: Planogram,
    *,
    timing: LinkTiming | None = None,
    clock: Clock | None = None,
) -> tuple[BoardLink | ModbusBus, Cabinet]:
    """The serial link and a Cabinet that speaks planogram slot numbers. The protocol
    (`hardware.protocol`, or Modbus lock boards with `[modbus] locks`) picks the link and the
    drivers; nothing above the Cabinet differs. With `[[board]]` tables each board has its
    own protocol and port (`_per_board_cabinet`): one link per port, and a `LinkGroup` over
    them when there are several. ConfigError: the planogram does not fit the [[board]] tables."""
    if config.boards:
        return _per_board_cabinet(config, planogram, timing, clock)
    if config.modbus.locks:
        return _modbus_lock_cabinet(config, planogram, clock)
    hw = config.hardware
    slot_map = {s.slot_no: (s.board, s.address) for s in planogram}
    if hw.protocol == "vmc":
        vmc_link = VmcLink(hw.port, hw.baud, clock=clock)
        vmc = VmcBoard(
            vmc_link,
            0,
            selection_offset=hw.vmc_selection_offset,
            command=VmcCommandKind(hw.vmc_command),
            slots=(s.address for s in planogram),
            clock=clock,
        )
        return vmc_link, Cabinet({0: vmc}, slot_map)
    addresses = tuple(sorted(set(hw.boards) | {s.board for s in planogram}))
    link = SerialLink(hw.port, hw.baud, addresses=addresses, timing=timing, clock=clock)
    boards: dict[int, BoardDriver] = {a: SerialBoard(link, a, clock=clock) for a in addresses}
    return link, Cabinet(boards, slot_map)


# --- [[board]]: a protocol per board (docs/configuration.md) ----------------------------------


def _per_board_cabinet(
    config: KioskConfig, planogram: Planogram, timing: LinkTiming | None, clock: Clock | None
) -> tuple[BoardLink | ModbusBus, Cabinet]:
    issues = planogram_board_issues(config, planogram)
    if issues:
        raise ConfigError(issues)
    slots: dict[int, list[int]] = {}
    for s in planogram:
        slots.setdefault(s.board, []).append(s.address)
    ports: dict[str, list[BoardConfig]] = {}
    for b in sorted(config.boards, key=lambda b: b.address):
        ports.setdefault(b.port, []).append(b)
    links: dict[str, BoardLink | ModbusBus] = {}
    boards: dict[int, BoardDriver] = {}
    for port, group in ports.items():
        first = group[0]
        if first.protocol == "kiosk":
            link = SerialLink(
                port,
                first.baud,
                addresses=tuple(b.address for b in group),
                timing=timing,
                clock=clock,
            )
            boards.update({b.address: SerialBoard(link, b.address, clock=clock) for b in group})
            links[port] = link
        elif first.protocol == "vmc":  # one VMC per port (kiosk.config._board_checks)
            vmc_link = VmcLink(port, first.baud, clock=clock)
            boards[first.address] = VmcBoard(
                vmc_link,
                first.address,
                selection_offset=first.vmc_selection_offset,
                command=VmcCommandKind(first.vmc_command),
                slots=slots.get(first.address, ()),
                clock=clock,
            )
            links[port] = vmc_link
        else:
            bus = _modbus_bus(config, [b.unit for b in group], port=port, baud=first.baud)
            boards.update({b.address: _lock_board(bus, b, clock) for b in group})
            links[port] = bus
    cabinet = Cabinet(boards, {s.slot_no: (s.board, s.address) for s in planogram})
    if len(links) == 1:
        return next(iter(links.values())), cabinet
    return LinkGroup(links), cabinet


# --- Modbus (docs/boards/modbus.md): lock boards instead of our board, an optional sensor ----


def _modbus_bus(
    config: KioskConfig,
    watch_units: Iterable[int] | None = None,
    *,
    port: str | None = None,
    baud: int | None = None,
) -> ModbusBus:
    """A Modbus line with the [modbus] settings (`port`, `baud`: a [[board]]'s own)."""
    m = config.modbus
    settings = BusSettings(
        m.port if port is None else port,
        m.baud if baud is None else baud,
        m.parity,
        m.stopbits,
        m.timeout_s,
        m.retries,
    )
    return ModbusBus(settings, watch_units)


def _lock_board(bus: ModbusBus, b: BoardConfig, clock: Clock | None) -> ModbusLockBoard:
    lock_map = LockMap(
        unit=b.unit,
        locks=b.locks_per_board,
        coil_base=b.lock_coil_base,
        door_base=b.door_input_base,
        door_open_value=bool(b.door_open_value),
        door_poll_s=b.door_poll_s,
    )
    return ModbusLockBoard(bus, b.address, lock_map, clock=clock)


def _modbus_lock_cabinet(
    config: KioskConfig, planogram: Planogram, clock: Clock | None
) -> tuple[ModbusBus, Cabinet]:
    """A locker cabinet whose doors are Modbus lock boards (`[modbus] locks = true`)."""
    m = config.modbus
    addresses = sorted(set(config.hardware.boards) | {s.board for s in planogram})
    bus = _modbus_bus(config, [m.lock_unit_base + a for a in addresses])
    boards: dict[int, BoardDriver] = {
        a: ModbusLockBoard(
            bus,
            a,
            LockMap(
                unit=m.lock_unit_base + a,
                locks=m.locks_per_board,
                coil_base=m.lock_coil_base,
                door_base=m.door_input_base,
                door_open_value=bool(m.door_open_value),
                door_poll_s=m.door_poll_s,
            ),
            clock=clock,
        )
        for a in addresses
    }
    return bus, Cabinet(boards, {s.slot_no: (s.board, s.address) for s in planogram})


def build_sensor(
    config: KioskConfig, link: BoardLink | ModbusBus | None = None
) -> ModbusTemperatureSensor | None:
    """The temperature sensor on the Modbus line (`[modbus] sensor_unit`), sharing the lock
    boards' line when there is one (`link`), else on a line of its own that it closes."""
    m = config.modbus
    if not m.sensor_unit:
        return None
    parts = link.links.values() if isinstance(link, LinkGroup) else [link]
    shared = next(
        (p for p in parts if isinstance(p, ModbusBus) and p.settings.port == m.port), None
    )
    bus = shared or _modbus_bus(config)
    sensor_map = SensorMap(
        unit=m.sensor_unit,
        temperature_register=m.temperature_register,
        humidity_register=None if m.humidity_register < 0 else m.humidity_register,
        temperature_scale=m.temperature_scale,
        humidity_scale=m.humidity_scale,
        signed=m.temperature_signed,
    )
    return ModbusTemperatureSensor(bus, sensor_map, owns_bus=shared is None)


class App:
    """The wired kiosk (see the module docstring for the build order). Implements
    kiosk.sync.port.KioskPort for its sync bridge, which reads it only once running."""

    def __init__(
        self,
        config: KioskConfig,
        store: Store,
        link: BoardLink | ModbusBus,
        board: Cabinet,
        outbox: Outbox,
        clock: Clock,
        controller: Callable[..., Controller],
        sync: Callable[[App], SyncBridge] | None = None,
    ) -> None:
        self.config, self.store, self.link, self.board = config, store, link, board
        self.outbox, self.clock = outbox, clock
        self.stop_requested = threading.Event()
        self.exit_code = 0
        self.ui_beat: float | None = None  # monotonic time of the UI loop's last turn
        self.watchdog: systemd.Watchdog | None = None
        self.update_gate: UpdateGate | None = None
        self._installing: threading.Thread | None = None
        self._offline_since: float | None = None
        self.sync = sync(self) if sync is not None else None
        hooks: dict[str, Any] = {}
        if self.sync is not None:
            bridge = self.sync
            hooks = {
                "province_online": lambda: bridge.client.connected,
                "on_commit": self.sync.wake,
                "payment_query": self.sync.payment_query,
                "province_time": self.sync.clock_offset.province_now,
                "province_keys": self.sync.province_keys,
                "payment_rejected": self.sync.rejected,
            }
        self.controller = controller(**hooks)
        # a version on trial sells nothing until the supervisor commits it (docs/deploy.md)
        self.trial = trial_version(config.update.root)
        self.controller.updating = self.trial is not None

    def start(self) -> None:
        self.link.add_state_listener(self._link_state)
        self.link.start()
        self.controller.start()
        if self.sync is not None:
            self.sync.start()

    def _link_state(self, online: bool, reason: str) -> None:
        self._offline_since = None if online else time.monotonic()
        self.controller.board_state_changed(online, reason)

    def request_exit(self, code: int) -> None:
        """Leave `run()` with `code` (a `restart_app` command: systemd starts us again)."""
        self.exit_code = code
        self.stop_requested.set()

    def start_watchdog(self, interval: float | None = None, board_grace_s: float = 120.0) -> None:
        """systemd's watchdog, petted only while the controller answers, the board link is
        online (or went offline less than `board_grace_s` ago), the store takes a write and
        (with a screen) the UI loop beats every UI_BEAT_S."""
        started = time.monotonic()

        def board_link() -> bool:
            since = self._offline_since if self._offline_since is not None else started
            return self.link.online or time.monotonic() - since < board_grace_s

        def store_writable() -> bool:
            self.store.settings.set("watchdog.probe", str(int(self.clock.time())))
            return True

        checks = {
            "ui_loop": lambda: (
                self.ui_beat is None or time.monotonic() - self.ui_beat < 3 * UI_BEAT_S
            ),
            "controller": lambda: self.controller.call(lambda: True, timeout=5.0) is True,
            "board_link": board_link,
            "store": store_writable,
        }
        sync = self.sync
        if self.trial is not None and sync is not None and gate_province(self.config.update.root):
            # the health gate of a version on trial also wants the province link (it came
            # through it); once committed, a province outage never restarts the kiosk
            checks["province_link"] = lambda: self.trial is None or sync.client.connected
        self.watchdog = systemd.Watchdog(checks, interval).start()

    def start_update_gate(self, poll_s: float = 2.0) -> None:
        """Switch to a staged version when idle; send update steps (kiosk/update/gate.py)."""
        sync = self.sync
        self.update_gate = UpdateGate(
            self.config.update.root,
            close=self.close_for_update,
            open_=self._open_after_update,
            leave=lambda: self.request_exit(exitcodes.RESTART),
            emit=self._update_events,
            reported_seq=lambda: int(self.store.settings.get(UPDATE_SEQ) or 0),
            trial=self.trial,
            province_online=None if sync is None else lambda: sync.client.connected,
            switches=supervised(),
            poll_s=poll_s,
        ).start()

    def _open_after_update(self) -> None:
        """The supervisor committed this version (or a switch did not happen): sell."""
        self.trial = None
        c = self.controller
        c.call(lambda: setattr(c, "updating", False), timeout=5.0)

    def update_report(self) -> Mapping[str, Any]:
        from kiosk import __version__

        return software_report(self.config.update.root, __version__)

    def install_release(self, url: str) -> None:
        """An `install_release` command: fetch, verify, install and stage in a thread (pip
        takes minutes); the kiosk sells on meanwhile and switches when idle (the gate)."""
        from kiosk.update.installer import InstallError, Staging, fetch_and_stage
        from kiosk.update.release import ReleaseError

        cfg = self.config

        def work() -> None:
            try:
                staging = Staging.for_config(cfg)
                fetch_and_stage(url, staging, ca_file=cfg.sync.ca_file, say=lambda _t: None)
                log_event(log, "update.staged", url=url)
            except (InstallError, ReleaseError, OSError) as e:
                log_event(log, "update.refused", logging.WARNING, url=url, reason=str(e)[:300])

        if self._installing is not None and self._installing.is_alive():
            log_event(log, "update.busy", logging.WARNING, url=url, reason="an install runs")
            return
        self._installing = threading.Thread(target=work, name="update-install", daemon=True)
        self._installing.start()

    def close_for_update(self) -> bool:
        """If idle (no open order, no technician in the service menu, not dispensing, nobody
        shopping), out of service `updating` ("维护中 / updating" on screen) in the same step on
        the controller thread, so no order can start in between. True when closed."""
        c = self.controller

        def close() -> bool:
            mode = c.view().mode
            idle = (
                not c.sales.orders
                and not c.access.technician
                and mode in ("idle", "out_of_service")
            )
            if idle:
                c.updating = True
            return idle

        return c.call(close, timeout=5.0) is True

    def _update_events(self, steps: list[Mapping[str, Any]]) -> None:
        """Each update step as an `events/update` record (HIGH), with the mark, in one
        transaction (a step is sent once)."""
        kiosk_id = self.config.identity.kiosk_id
        with self.store.transaction() as conn:
            for step in steps:
                body = {"kiosk_id": kiosk_id, **step}
                event_id = f"update-{kiosk_id}-{int(step['at'])}-{step['seq']}"
                self.outbox.append("update", body, Priority.HIGH, event_id=event_id, conn=conn)
                if step["step"] in ("rolled_back", "refused"):
                    alarm = messages.alarm(
                        "UPDATE_" + str(step["step"]).upper(),
                        f"version {step.get('version')}: {step.get('reason', '')}".strip(),
                        severity="critical" if step["step"] == "rolled_back" else "warning",
                        version=step.get("version"),
                    )
                    self.outbox.append("alarm", alarm, Priority.HIGH, conn=conn)
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (UPDATE_SEQ, str(max(int(s["seq"]) for s in steps))),
            )

    def ui_heartbeat(self) -> None:
        """Called by the UI loop after every turn (from the UI thread)."""
        self.ui_beat = time.monotonic()

    def close(self, timeout: float = 3.0) -> None:
        """Stop the watchdog, the province link, the controller and the board link, waiting
        about `timeout` seconds in all (SIGTERM/SIGINT must end `kiosk run` within 5 s), then
        close the store. Nothing in flight is waited for: a vend's state is on disk before
        each step, and the next start recovers it as after a crash (asks the board)."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        if self.watchdog is not None:
            self.watchdog.stop()
        if self.update_gate is not None:
            self.update_gate.stop()
        if self.sync is not None:
            self.sync.stop(left())
        self.controller.stop(left())
        self.link.close()
        self.store.close()


def build_app(
    config: KioskConfig,
    *,
    province_public_key: bytes | None = None,
    clock: Clock | None = None,
    link_timing: LinkTiming | None = None,
    publish_view: Callable[[ui.ViewState], None] | None = None,
    sync: bool = False,
    sync_options: Mapping[str, Any] | None = None,
    **controller_options: Any,
) -> App:
    """Open the store and wire everything (nothing started yet; call `App.start()`).
    `sync`: with the province link (`SyncBridge`, `sync_options` are its keyword options).
    `province_public_key`: the key the controller trusts for confirmations (default: the
    config's, which also seeds the sync bridge's keyring). `controller_options` go to
    `Controller` (timings such as tick_s, start_grace_s)."""
    clock = clock or SystemClock()
    # refused before anything is opened: a test key or the demo secret with a real province
    refuse_in_field(config, test_payments=province_public_key is not None)
    secret = load_device_secret(config)
    store = open_store(config.store.data_dir, clock)
    try:
        store.counters.next_value("boot")
        from kiosk.sync.signing import load_public_key_pem

        s = config.sync
        config_key = (
            None if s.province_public_key is None else load_public_key_pem(s.province_public_key)
        )
        root_key = (
            None if s.province_root_key is None else load_public_key_pem(s.province_root_key)
        )  # signs key sets only (kiosk.sync.keyset)
        offset = ClockOffset() if sync else None
        outbox = Outbox(
            store,
            Topics(config.identity.kiosk_id),
            clock,
            ack_timeout_s=config.sync.ack_timeout_s,
            clock_offset=offset,
        )
        link, cabinet = build_cabinet(
            config, store.planogram.load(), timing=link_timing, clock=clock
        )
        key = province_public_key if province_public_key is not None else config_key
        sensor = build_sensor(config, link)

        def controller(**hooks: Any) -> Controller:
            if province_public_key is not None:  # an explicit trust key (test payments) wins
                hooks.pop("province_keys", None)
            return Controller(
                store,
                cabinet,
                config,
                clock,
                secret,
                key,
                outbox,
                publish_view,
                **hooks,
                sensor=sensor,
                **controller_options,
            )

        def bridge(app: App) -> SyncBridge:
            assert offset is not None
            return SyncBridge(
                app, config_key, offset, root_key=root_key, **dict(sync_options or {})
            )

        return App(
            config, store, link, cabinet, outbox, clock, controller, bridge if sync else None
        )
    except BaseException:
        store.close()
        raise

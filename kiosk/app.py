"""Composition root: builds the kiosk from its config, starts its threads, shuts them down.

Owns: the wiring (store -> outbox -> serial link -> boards/cabinet -> controller -> UI or a
headless script), the sync bridge (`SyncBridge`: the MQTT client, what each downlink message
does to the kiosk, reported state and telemetry), the systemd readiness/watchdog hookup, and
the test payment source. Decides nothing about sales (the controller and
the core do) and never reads a secret it does not hand straight to the component that needs it.
The test payment source is TEST ONLY: it signs confirmations with a throwaway key that the kiosk
is then told to trust; a field config never uses it (`--test-payments` is refused without it).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk import __version__, systemd
from kiosk import contract as ui
from kiosk.clock import Clock, SystemClock
from kiosk.config import KioskConfig
from kiosk.controller import Controller
from kiosk.core.catalog import Catalog, Category, Product
from kiosk.core.payment import (
    PaymentConfirmation,
    PaymentStatus,
    PaymentStatusQuery,
    PaymentStatusReply,
    confirmation_from_dict,
    sign_confirmation,
)
from kiosk.core.planogram import Planogram, planogram_from_csv
from kiosk.hardware.board import BoardDriver, Cabinet, SerialBoard
from kiosk.hardware.link import LinkTiming, SerialLink
from kiosk.log import log_event
from kiosk.store import Store, StoreError, open_store
from kiosk.sync import messages
from kiosk.sync.client import SyncClient, SyncConfigError, sync_problem
from kiosk.sync.clockoffset import ClockOffset
from kiosk.sync.media import DEFAULT_BUDGET_BYTES, MediaCache, MediaFetcher, media_dir
from kiosk.sync.outbox import Outbox, Priority
from kiosk.sync.signing import Keyring, TrustError, TrustPolicy, TrustReason
from kiosk.sync.topics import Topics, parse_topic

__all__ = [
    "EXIT_RESTART",
    "App",
    "SyncBridge",
    "TestPaymentSource",
    "build_app",
    "build_cabinet",
    "load_device_secret",
    "run",
    "script_buy3",
    "status_reply_from_wire",
]

log = logging.getLogger("kiosk.app")

Say = Callable[[str], None]
EXIT_RESTART = 75  # `restart_app`: EX_TEMPFAIL; the unit's Restart=on-failure starts us again


class TestPaymentSource:
    """TEST ONLY: a stand-in province that signs payment confirmations with a throwaway key."""

    __test__ = False  # not a pytest class

    def __init__(self, private_key: bytes | None = None) -> None:
        key = (
            Ed25519PrivateKey.from_private_bytes(private_key)
            if private_key is not None
            else Ed25519PrivateKey.generate()
        )
        self._private = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self.public_key = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._n = 0

    def confirm(
        self, kiosk_id: str, order_id: str, amount_fen: int, now: float, method: str = "wechat"
    ) -> PaymentConfirmation:
        self._n += 1
        c = PaymentConfirmation(
            kiosk_id=kiosk_id,
            order_id=order_id,
            amount_fen=amount_fen,
            method=method,
            provider_ref=f"test-{order_id}-{self._n}",
            paid_at=int(now),
            event_id=uuid.uuid4().hex,
        )
        return sign_confirmation(self._private, c)


def load_device_secret(config: KioskConfig) -> bytes:
    """The device secret: the file's bytes exactly as stored, trailing newline included (see
    docs/payments.md); the province simulator reads its copy the same way
    (`kiosk.sim.province.load_device_secret`)."""
    path = config.payments.device_secret_file
    if path is None:
        raise ValueError("payments.device_secret_file is not set")
    return path.read_bytes()


def build_cabinet(
    config: KioskConfig,
    planogram: Planogram,
    *,
    timing: LinkTiming | None = None,
    clock: Clock | None = None,
) -> tuple[SerialLink, Cabinet]:
    """The serial link and a Cabinet that speaks planogram slot numbers."""
    hw = config.hardware
    addresses = tuple(sorted(set(hw.boards) | {s.board for s in planogram}))
    link = SerialLink(hw.port, hw.baud, addresses=addresses, timing=timing, clock=clock)
    boards: dict[int, BoardDriver] = {a: SerialBoard(link, a, clock=clock) for a in addresses}
    slot_map = {s.slot_no: (s.board, s.address) for s in planogram}
    return link, Cabinet(boards, slot_map)


UI_BEAT_S = 5.0  # the UI loop turns at least this often while a watchdog watches it


@dataclass
class App:
    config: KioskConfig
    store: Store
    link: SerialLink
    board: Cabinet
    outbox: Outbox
    controller: Controller
    clock: Clock
    sync: SyncBridge | None = None
    watchdog: systemd.Watchdog | None = None
    stop_requested: threading.Event = field(default_factory=threading.Event)
    exit_code: int = 0
    ui_beat: float | None = None  # monotonic time of the UI loop's last turn; None: no UI
    _offline_since: float | None = None

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
        online (or went offline less than `board_grace_s` ago) and the store takes a write."""
        started = time.monotonic()

        def controller_alive() -> bool:
            return self.controller.call(lambda: True, timeout=5.0) is True

        def board_link() -> bool:
            if self.link.online:
                return True
            since = self._offline_since if self._offline_since is not None else started
            return time.monotonic() - since < board_grace_s

        def store_writable() -> bool:
            self.store.settings.set("watchdog.probe", str(int(self.clock.time())))
            return True

        def ui_loop() -> bool:
            # headless: no UI loop to watch; with a screen, the loop beats every UI_BEAT_S
            beat = self.ui_beat
            return beat is None or time.monotonic() - beat < 3 * UI_BEAT_S

        self.watchdog = systemd.Watchdog(
            {
                "ui_loop": ui_loop,
                "controller": controller_alive,
                "board_link": board_link,
                "store": store_writable,
            },
            interval,
        ).start()

    def ui_heartbeat(self) -> None:
        """Called by the UI loop after every turn (from the UI thread)."""
        self.ui_beat = time.monotonic()

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.sync is not None:
            self.sync.stop()
        self.controller.stop()
        self.link.close()
        self.store.close()


def build_app(
    config: KioskConfig,
    *,
    province_public_key: bytes | None = None,
    clock: Clock | None = None,
    link_timing: LinkTiming | None = None,
    publish_view: Callable[[ui.ViewState], None] | None = None,
    **controller_options: Any,
) -> App:
    """Open the store and wire everything (nothing started yet; call `App.start()`).
    `controller_options` go to `Controller` (timings such as tick_s, start_grace_s)."""
    clock = clock or SystemClock()
    store = open_store(config.store.data_dir, clock)
    try:
        store.counters.next_value("boot")
        if province_public_key is None and config.sync.province_public_key is not None:
            from kiosk.sync.signing import load_public_key_pem

            province_public_key = load_public_key_pem(config.sync.province_public_key)
        outbox = Outbox(store, Topics(config.identity.kiosk_id), clock)
        link, cabinet = build_cabinet(
            config, store.planogram.load(), timing=link_timing, clock=clock
        )
        controller = Controller(
            store,
            cabinet,
            config,
            clock,
            load_device_secret(config),
            province_public_key,
            outbox,
            publish_view,
            **controller_options,
        )
    except BaseException:
        store.close()
        raise
    return App(config, store, link, cabinet, outbox, controller, clock)


# --- the province link ----------------------------------------------------------------------


def status_reply_from_wire(body: Mapping[str, Any]) -> PaymentStatusReply | None:
    """An `orders/status/reply` body -> PaymentStatusReply. The wire spells the status in
    capitals (PAID / NOT_PAID / CLOSED, docs/mqtt-api.yaml), PaymentStatus in lower case. A
    confirmation that does not parse is dropped (a PAID reply without one is then refused by
    verify_status_reply). None for an unknown status."""
    try:
        status = PaymentStatus(str(body.get("status", "")).lower())
    except ValueError:
        return None
    raw = body.get("confirmation")
    c = confirmation_from_dict(raw) if raw is not None else None
    return PaymentStatusReply(
        str(body.get("order_id", "")), status, c if isinstance(c, PaymentConfirmation) else None
    )


class _LogTail(logging.Handler):
    """The last lines logged, for `upload_logs`."""

    def __init__(self, lines: int = 500) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            kv = getattr(record, "kv", None)
            text = self.format(record)
            if isinstance(kv, dict) and kv:
                text += " " + " ".join(f"{k}={v}" for k, v in kv.items())
            self.lines.append(text)
        except Exception:  # never let logging take the kiosk down
            self.handleError(record)


_META = ("name", "version", "kiosk_id", "issued_at")
LOG_TAIL_MAX_BYTES = 48_000  # an event must stay below the 64 KiB message limit


class SyncBridge:
    """The kiosk's side of the province link: owns the SyncClient and decides what each
    downlink message does (see the module docstring of kiosk.sync.client for the transport).

    - payment confirmations and order-status replies go to the controller (it verifies them);
    - desired planogram / prices / config and the province catalog go through
      `TrustPolicy.accept_versioned` with an `apply` that writes the store inside the policy's
      transaction, then `controller.reload()`; key rotations through `accept_keys`;
    - commands through `accept_command(env, province_now)`;
    - product images (media, kiosk.sync.media): the catalog's sha256 image refs missing from
      `<data_dir>/media` are requested at start, on every (re)connect and after a catalog is
      applied; replies and retained province-wide images go to the fetcher (verified, stored
      within `media_budget_bytes`); each new image is handed to `image_listeners` (the UI's
      ProductImages.image_arrived) from the report thread, never paho's;
    - every TrustError (except a routine STALE_VERSION) becomes an alarm record and a log line;
    - reported state on every (re)connect and every `report_every_s`; telemetry (LOW,
      coalesced) every `telemetry_every_s`.
    """

    def __init__(
        self,
        app: App,
        province_public_key: bytes | None,
        *,
        report_every_s: float = 300.0,
        telemetry_every_s: float = 60.0,
        client_options: Mapping[str, Any] | None = None,
        media_budget_bytes: int = DEFAULT_BUDGET_BYTES,
        media_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.config = app.config
        self.kiosk_id = app.config.identity.kiosk_id
        self.topics = Topics(self.kiosk_id)
        self.clock_offset = ClockOffset()
        app.outbox.clock_offset = self.clock_offset
        store = app.store
        keyring = Keyring.load(store)
        if province_public_key is not None and len(keyring) == 0:
            # provisioning: the first key comes from the config; later keys only by a signed
            # rotation (never re-add the config key: it may have been retired since)
            keyring.add(province_public_key)
            keyring.save(store)
        self.policy = TrustPolicy(
            keyring, store, kiosk_id=self.kiosk_id, on_reject=self._on_reject, clock=app.clock
        )
        self.client = SyncClient(
            self.config.sync,
            self.kiosk_id,
            app.outbox,
            self.topics,
            app.clock,
            self.on_message,
            store.counters.current("boot"),
            clock_offset=self.clock_offset,
            **dict(client_options or {}),
        )
        self.report_every_s = report_every_s
        self.telemetry_every_s = telemetry_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_tail = _LogTail()
        app.controller.on_commit = self.client.wake
        app.controller.province_time = self.clock_offset.province_now
        app.controller.payment_query = self.payment_query
        # --- media (sync issue item 6) ------------------------------------------------------
        self.media = MediaCache(
            media_dir(self.config.store.data_dir), media_budget_bytes, app.clock
        )
        self.image_listeners: list[Callable[[str], object]] = []
        self._new_images: collections.deque[str] = collections.deque()
        self._media_connected = False
        self.fetcher = MediaFetcher(
            self.media,
            self._request_image,
            app.clock,
            on_new_image=self._new_images.append,  # paho's thread: only queue it
            **dict(media_options or {}),
        )
        self._want_catalog_images()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        logging.getLogger().addHandler(self._log_tail)
        self.client.start()
        self._thread = threading.Thread(target=self._run, name="sync-report", daemon=True)
        self._thread.start()

    def stop_reporting(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def wait_drained(self, timeout: float, offline_grace_s: float = 2.0) -> int:
        """Wait until the province acknowledged every record (end to end), at most `timeout`,
        and only while the link is up (gone for `offline_grace_s`: stop waiting, the records
        stay in the outbox for the next start). Returns the records left."""
        now = time.monotonic()
        deadline = now + timeout
        offline_since = None if self.client.connected else now - offline_grace_s
        while True:
            left = sum(self.app.outbox.depth().values())
            now = time.monotonic()
            if self.client.connected:
                offline_since = None
            elif offline_since is None:
                offline_since = now
            if (
                left == 0
                or now >= deadline
                or (offline_since is not None and now - offline_since >= offline_grace_s)
            ):
                return left
            self.client.wake()
            time.sleep(0.1)

    def stop(self) -> None:
        self.stop_reporting()
        self.client.stop()
        logging.getLogger().removeHandler(self._log_tail)

    # --- uplink ---------------------------------------------------------------------------

    def _append(
        self, kind: str, body: Mapping[str, Any], priority: Priority, *, coalesce: bool = False
    ) -> None:
        try:
            self.app.outbox.append(kind, body, priority, coalesce=coalesce)
        except Exception as e:  # a full outbox must not take the link down
            log_event(log, "sync.append_failed", logging.ERROR, kind=kind, error=repr(e))
            return
        self.client.wake()

    def _link_counters(self) -> dict[str, int]:
        s = self.client.stats()
        counters = {f"serial_{k}": int(v) for k, v in self.app.link.counters().items()}
        counters.update(
            mqtt_published=s.published,
            mqtt_acked=s.acked,
            mqtt_reconnects=s.reconnects,
            mqtt_connect_failures=s.connect_failures,
            mqtt_bad_messages=s.bad_messages,
            mqtt_puback_failures=s.puback_failures,
        )
        return counters

    def report(self) -> None:
        """Append the reported state (NORMAL): versions applied, stock, software, counters."""
        ob = self.app.outbox
        view = self.app.controller.view()
        reason = view.out_of_service.reason_key if view.out_of_service is not None else ""
        body = messages.reported_state(
            applied_versions={
                **self.policy.applied_versions(),
                "catalog_in_store": self.app.store.catalog.version(),
            },
            stock=self.app.store.stock.levels(),
            software_version=__version__,
            link=self._link_counters(),
            outbox_depth={p.name.lower(): n for p, n in ob.depth().items()},
            outbox_dropped={p.name.lower(): n for p, n in ob.dropped().items()},
            selling=view.mode != "out_of_service",
            out_of_service_reason=reason,
        )
        self._append("reported", body, Priority.NORMAL)

    def telemetry(self) -> None:
        s = self.client.stats()
        view = self.app.controller.view()
        metrics: dict[str, float | int | str | bool | None] = {
            "mode": view.mode,
            "board_online": self.app.link.online,
            "mqtt_connected": s.connected,
            "outbox_depth": sum(self.app.outbox.depth().values()),
            "clock_offset_s": self.clock_offset.offset(),
            **self._link_counters(),
        }
        self._append("telemetry", messages.telemetry(metrics), Priority.LOW, coalesce=True)

    def _run(self) -> None:
        was_connected = False
        next_report = next_telemetry = time.monotonic() + self.telemetry_every_s
        while not self._stop.wait(0.25):
            try:
                now = time.monotonic()
                connected = self.client.connected
                if connected and not was_connected:
                    self.report()  # birth: what this kiosk runs, right after each connect
                    next_report = now + self.report_every_s
                was_connected = connected
                if now >= next_report:
                    self.report()
                    next_report = now + self.report_every_s
                if now >= next_telemetry:
                    self.telemetry()
                    next_telemetry = now + self.telemetry_every_s
            except Exception:
                log.exception("sync.report_failed")
            try:
                self._media_step()
            except Exception:
                log.exception("media.step_failed")

    # --- media (sync issue item 6) ---------------------------------------------------------

    def _want_catalog_images(self) -> None:
        self.fetcher.want(p.image_ref for p in self.app.store.catalog.load())

    def _request_image(self, sha256: str) -> bool:
        body = messages.image_request(self.kiosk_id, sha256)
        return self.client.publish_direct(self.topics.image_request, body)

    def _media_step(self) -> None:
        """From the report thread: on each (re)connect ask again for what is missing, send due
        image requests, tell listeners of new images."""
        connected = self.client.connected
        if connected and not self._media_connected:
            self._want_catalog_images()
        self._media_connected = connected
        if connected:
            self.fetcher.poll()
        while self._new_images:
            sha = self._new_images.popleft()
            for listener in list(self.image_listeners):
                try:
                    listener(sha)
                except Exception:
                    log.exception("media: image listener failed")

    def payment_query(self, q: PaymentStatusQuery) -> None:
        """The controller asks "was order X paid?" (no confirmation came in time)."""
        body = messages.order_status_request(q.kiosk_id, q.order_id, uuid.uuid4().hex, q.asked_at)
        if not self.client.publish_direct(self.topics.order_status_request, body):
            log_event(log, "sync.status_request_not_sent", logging.WARNING, order=q.order_id)

    # --- downlink -------------------------------------------------------------------------

    def _on_reject(self, what: str, err: TrustError) -> None:
        log_event(
            log,
            "sync.rejected",
            logging.WARNING,
            what=what,
            reason=err.reason.value,
            detail=err.detail,
        )
        self._append(
            "alarm",
            messages.trust_rejection_alarm(what, err.reason.value, err.detail),
            Priority.HIGH,
        )

    def on_message(self, topic: str, body: dict[str, Any]) -> None:
        """SyncClient's handler (paho's network thread): decoded, schema-checked messages."""
        parsed = parse_topic(topic, self.topics.prefix)
        kind = parsed.message_kind if parsed is not None else None
        try:
            if kind == "payment_confirm":
                self.app.controller.submit_confirmation(body["confirmation"])
            elif kind == "order_status_reply":
                reply = status_reply_from_wire(body)
                if reply is None:
                    log_event(log, "sync.bad_status", logging.WARNING, status=body.get("status"))
                else:
                    self.app.controller.submit_status_reply(reply)
            elif kind == "desired" and parsed is not None:
                self._versioned(parsed.sub, body)
            elif kind == "catalog":
                self._versioned("catalog", body)
            elif kind == "keys":
                self.policy.accept_keys(body)
            elif kind == "command":
                self._command(body)
            elif kind == "image":  # media: a reply or a retained province-wide image
                self.fetcher.on_image(str(body["sha256"]), bytes(body["data"]))
            else:
                log_event(log, "sync.ignored", topic=topic)
        except TrustError:
            pass  # logged by the policy, alarm raised by _on_reject

    def _versioned(self, name: str, env: dict[str, Any]) -> None:
        apply = {
            "catalog": self._apply_catalog,
            "planogram": self._apply_planogram,
            "prices": self._apply_prices,
            "config": self._apply_config,
        }[name]
        self.policy.accept_versioned(name, env, apply)
        self.app.controller.reload()
        self.report()
        if name == "catalog":
            self._want_catalog_images()  # media: the new catalog may name new images

    # apply callbacks: run inside the policy's transaction (nested writes are savepoints), so
    # the store change and the version bump commit together or not at all

    def _apply_catalog(self, body: dict[str, Any]) -> None:
        products = body.get("products")
        if not isinstance(products, list):
            raise TrustError(TrustReason.MALFORMED, "catalog: products must be a list")
        items = []
        for p in products:
            if not isinstance(p, dict):
                raise TrustError(TrustReason.MALFORMED, "catalog: a product is not an object")
            items.append(Product(**{**p, "category": Category(str(p.get("category")))}))
        catalog = Catalog.of(int(body["version"]), items)
        self.app.store.catalog.replace(self._with_prices(catalog))

    def _with_prices(self, catalog: Catalog) -> Catalog:
        """A catalog with the kiosk's own price list (desired/prices) laid over it."""
        prices = self.app.store.settings.get_json("sync.prices", {})
        if not isinstance(prices, dict):
            return catalog
        return Catalog.of(
            catalog.version,
            (
                dataclasses.replace(p, price_fen=prices[p.product_id])
                if isinstance(prices.get(p.product_id), int)
                else p
                for p in catalog
            ),
        )

    def _apply_prices(self, body: dict[str, Any]) -> None:
        prices = body.get("prices")
        if not isinstance(prices, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in prices.values()
        ):
            raise TrustError(TrustReason.MALFORMED, "prices: {product_id: fen > 0}")
        self.app.store.settings.set_json("sync.prices", prices)
        self.app.store.catalog.replace(self._with_prices(self.app.store.catalog.load()))

    def _apply_planogram(self, body: dict[str, Any]) -> None:
        text = body.get("csv")
        if not isinstance(text, str):
            raise TrustError(TrustReason.MALFORMED, "planogram: csv must be a string")
        pg = planogram_from_csv(text, int(body["version"]), self.app.store.catalog.load().products)
        boards = set(self.app.config.hardware.boards) | {
            s.board for s in self.app.store.planogram.load()
        }
        missing = {s.board for s in pg} - boards
        if missing:
            raise TrustError(TrustReason.MALFORMED, f"planogram: unknown boards {sorted(missing)}")
        self.app.store.planogram.replace(pg)
        # the cabinet routes slot numbers to (board, address): follow the new layout
        self.app.board._map = {s.slot_no: (s.board, s.address) for s in pg}

    def _apply_config(self, body: dict[str, Any]) -> None:
        content = {k: v for k, v in body.items() if k not in _META}
        for k, v in content.items():
            self.app.store.settings.set(f"config.{k}", json.dumps(v, ensure_ascii=False))

    def _command(self, env: dict[str, Any]) -> None:
        body = self.policy.accept_command(
            env, self.clock_offset.province_now(self.app.clock.time())
        )
        command = str(body["command"])
        args = body.get("args") if isinstance(body.get("args"), dict) else {}
        assert isinstance(args, dict)
        c = self.app.controller
        log_event(log, "sync.command", command=command)
        if command in ("lock_sales", "unlock_sales"):
            c.post(ui.LockSales(command == "lock_sales"))
        elif command == "resync":
            self.app.outbox.reset_sent()
            self.report()
        elif command == "restart_app":
            self.app.request_exit(EXIT_RESTART)
        elif command == "upload_logs":
            self._upload_logs(int(args.get("lines", 200)))
        elif command == "open_door":
            slot = args.get("slot")
            if not isinstance(slot, int) or isinstance(slot, bool):
                raise self._reject_cmd(command, "open_door needs args.slot (int)")
            c.post(ui.OpenDoor(slot))
        else:
            raise self._reject_cmd(command, "unknown command")

    def _reject_cmd(self, command: str, detail: str) -> TrustError:
        err = TrustError(TrustReason.MALFORMED, detail)
        self._on_reject(f"command:{command}", err)
        return err

    def _upload_logs(self, n: int) -> None:
        lines = list(self._log_tail.lines)[-max(1, min(n, 500)) :]
        while lines and len(json.dumps(lines, ensure_ascii=False).encode()) > LOG_TAIL_MAX_BYTES:
            lines = lines[len(lines) // 4 + 1 :]
        self._append(
            "technician",
            {"action": "upload_logs", "lines": lines, "at": self.app.clock.time()},
            Priority.HIGH,
        )


# --- the headless shopper -------------------------------------------------------------------


def _describe(v: ui.ViewState) -> str:
    if v.mode == "payment" and v.payment is not None:
        return f"payment: order {v.payment.order_id}, {v.payment.amount_fen} fen"
    if v.mode == "dispensing" and v.dispensing is not None:
        return "dispensing: " + ", ".join(
            f"{i.product_id}@{i.slot_no}={i.status}" for i in v.dispensing.items
        )
    if v.mode == "done" and v.done is not None:
        return f"done: order {v.done.order_id}, paid {v.done.paid_fen} fen"
    if v.mode == "problem" and v.problem is not None:
        return (
            f"problem: {v.problem.message_key}, refund {v.problem.refund_fen} fen "
            f"via {v.problem.refund_channel} (order {v.problem.order_id})"
        )
    if v.mode == "out_of_service" and v.out_of_service is not None:
        return f"out of service: {v.out_of_service.reason_key}"
    return f"{v.mode}: cart {v.cart_count} items, {v.cart_total_fen} fen"


def _changed(seq: int) -> Callable[[ui.ViewState], bool]:
    return lambda v: v.seq != seq


def script_buy3(
    controller: Controller,
    payments: TestPaymentSource | None,
    say: Say,
    *,
    timeout: float = 120.0,
    clock: Clock | None = None,
    pay_via_province: bool = False,
) -> int:
    """A scripted shopper: buy three items and pay with the test payment source, or with
    `pay_via_province` print the pay URL (`pay url <url>`) and wait for the province's real
    confirmation (someone scans the code and pays).

    Resumable: if the store already holds an order made in this store (its epoch; orders
    carried forward by `kiosk store recover` do not count), it does not start another one; it
    pays an order still waiting for payment and waits until every order is closed (after a
    crash). Returns 0 when the last order closed, 1 otherwise.
    """
    from kiosk.core.payment import order_epoch

    clock = clock or SystemClock()
    kiosk_id = controller.kiosk_id
    epoch = controller.store.epoch
    orders = [o for o in controller.repo.all() if order_epoch(o.order_id) == epoch]
    if not orders:
        v = controller.wait_view(lambda v: v.mode == "idle", timeout)
        if v is None:
            say(f"kiosk not ready: {_describe(controller.view())}")
            return 1
        say(_describe(v))
        picks = [p.product.product_id for p in v.products if p.stock_left > 0]
        if not picks:
            say("nothing to sell")
            return 1
        wanted = [picks[0], picks[0], picks[1 % len(picks)]]
        controller.post(ui.StartShopping())
        for pid in wanted:
            controller.post(ui.AddToCart(pid))
            say(f"add {pid}")
        v = controller.wait_view(lambda v: v.cart_count == 3, 10)
        if v is None:
            say(f"cart refused: {controller.view().service.last_result}")
            return 1
        say(_describe(v))
        controller.post(ui.Checkout())
    v = controller.wait_view(lambda v: v.mode != "shopping", timeout)
    for order in controller.repo.unfinished():
        if order.state.value == "awaiting_payment":
            if payments is None and not pay_via_province:
                say(f"order {order.order_id} waits for payment; no test payment source")
                return 1
            v = controller.wait_view(lambda v: v.mode == "payment", timeout)
            if v is not None:
                say(_describe(v))
            if payments is None:
                if v is not None and v.payment is not None:
                    say(f"pay url {v.payment.pay_url}")
                continue  # the province's confirmation arrives over MQTT
            c = payments.confirm(kiosk_id, order.order_id, order.total_fen, clock.time())
            say(f"pay {order.order_id}: {order.total_fen} fen ({c.provider_ref})")
            controller.submit_confirmation(c)
    last = ""
    deadline = clock.monotonic() + timeout
    while clock.monotonic() < deadline:
        v = controller.view()
        text = _describe(v)
        if text != last:
            say(text)
            last = text
        if not controller.repo.unfinished() and v.mode not in ("payment", "dispensing"):
            break
        controller.wait_view(_changed(v.seq), 0.5)
    else:
        say("timed out waiting for the order to close")
        return 1
    for order in controller.repo.all():
        refund = sum(r.amount_fen for r in controller.repo.refunds(order.order_id))
        say(
            f"order {order.order_id}: {order.state.value}, paid {order.paid_fen} fen, "
            f"delivered {order.delivered_fen} fen, refund due {refund} fen"
        )
    problems = controller.repo.verify_ledger()
    say(f"ledger: {len(controller.repo.ledger())} records, {len(problems)} problems")
    controller.post(ui.BackToIdle("finished"))
    return 0 if not problems else 1


def run(
    config: KioskConfig,
    headless: bool,
    payment_source: TestPaymentSource | None = None,
    *,
    script: str | None = None,
    say: Say = print,
    timeout: float = 120.0,
    pay_via_province: bool = False,
    sync: bool | None = None,
    drain_timeout: float = 20.0,
) -> int:
    """`kiosk run`: the kiosk until SIGINT/SIGTERM (or a `restart_app` command, exit code
    EXIT_RESTART), or a headless script to its end.

    `sync`: None starts the province link when `config.sync` is usable (`sync_problem`), True
    requires it, False never starts it. With a link, a script waits (at most `drain_timeout`)
    for the province to acknowledge every record before it exits.
    """
    try:
        app = build_app(
            config,
            province_public_key=payment_source.public_key if payment_source is not None else None,
        )
    except (StoreError, sqlite3.Error, OSError) as e:
        # invariant 5: out of service and saying why, never a traceback or a crash loop
        from kiosk.degraded import run_degraded

        if script is not None:
            say(f"kiosk run: the store cannot be opened: {e}")
            return 1
        return run_degraded(config, e, headless, say)
    problem = sync_problem(config.sync) if sync is not False else "switched off"
    if sync and problem is not None:
        app.store.close()
        raise SyncConfigError(problem)
    try:
        if problem is None:
            key = None
            if config.sync.province_public_key is not None:
                from kiosk.sync.signing import load_public_key_pem

                key = load_public_key_pem(config.sync.province_public_key)
            app.sync = SyncBridge(app, key)
        else:
            log_event(log, "sync.off", reason=problem)
    except BaseException:
        app.store.close()
        raise
    stop = app.stop_requested

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    app.start()
    app.start_watchdog()
    systemd.notify_ready(f"kiosk {config.identity.kiosk_id} up")
    try:
        if script == "buy3":
            code = script_buy3(
                app.controller,
                payment_source,
                say,
                timeout=timeout,
                pay_via_province=pay_via_province,
            )
            if app.sync is not None:
                app.sync.stop_reporting()
                left = app.sync.wait_drained(drain_timeout)
                say(f"outbox: {left} records not acknowledged")
            return code
        if headless:
            say(f"kiosk {config.identity.kiosk_id} running headless; Ctrl-C stops")
            last = -1
            while not stop.is_set():
                v = app.controller.view()
                if v.seq != last:
                    say(_describe(v))
                    last = v.seq
                app.controller.wait_view(_changed(v.seq), 1.0)
            if app.sync is not None:
                app.sync.stop_reporting()
                app.sync.wait_drained(min(drain_timeout, 5.0))
            return app.exit_code
        from kiosk.ui.app import run as run_ui
        from kiosk.ui.images import ProductImages

        # media (sync issue item 6): the UI's pictures include fetched images, reloaded as
        # they arrive (decoded in the sync bridge's report thread, not the UI's)
        data_dir = config.store.data_dir
        images = ProductImages(data_dir / "images", media_dir(data_dir))
        if app.sync is not None:
            from kiosk.ui.events import notify_images_changed

            app.sync.image_listeners.append(images.image_arrived)
            app.sync.image_listeners.append(lambda _sha: notify_images_changed())

        threading.Thread(
            target=_exit_when_requested, args=(app,), name="exit-watch", daemon=True
        ).start()
        app.ui_heartbeat()  # the watchdog watches the UI loop from here on
        run_ui(
            app.controller,
            config.ui,
            app.clock,
            kiosk_mode=config.ui.fullscreen,
            images=images,
            heartbeat=app.ui_heartbeat,
            heartbeat_every_s=UI_BEAT_S,
        )
        return app.exit_code
    finally:
        systemd.notify_stopping()
        app.close()
        time.sleep(0)  # let daemon threads notice


def _exit_when_requested(app: App) -> None:
    """With a UI on screen (its loop cannot be stopped from outside in kiosk mode): on a
    `restart_app` command, stop the link and the controller, then leave the process."""
    app.stop_requested.wait()
    if app.exit_code == 0:
        return  # a signal: the UI's own handling ends the process
    with contextlib.suppress(Exception):
        systemd.notify_stopping()
        if app.sync is not None:
            app.sync.stop()
        app.controller.stop()
    os._exit(app.exit_code)

"""The kiosk's side of the province link: routing of downlink messages, reported state, media.

Owns: the SyncClient (see kiosk.sync.client for the transport), the trust checks each message
goes through (`TrustPolicy`), which handler each topic goes to, the report thread (reported
state, telemetry, media requests) and the status query the controller asks for. What an
accepted message does to the store and the controller is kiosk.sync.apply; what the bridge needs
from the kiosk is `KioskPort` (kiosk.sync.port), read only when a message arrives, so the
composition root builds the bridge first and hands its methods to the controller it builds next
(`wake` as `on_commit`, `payment_query`, `clock_offset.province_now` as `province_time`).

- payment confirmations and order-status replies go to the controller (it verifies them);
- desired planogram / prices / config and the province catalog go through
  `TrustPolicy.accept_versioned` with the matching `apply_*`, then `controller.reload()`; key
  sets through `accept_keys` (signed by the root key `root_key`, kiosk.sync.keyset); commands
  through `accept_command(env, province_now)`;
- product images (kiosk.sync.media): the catalog's sha256 image refs missing from
  `<data_dir>/media` are requested at start, on every (re)connect and after a catalog is
  applied; replies and retained province-wide images go to the fetcher (verified, stored
  within `media_budget_bytes`); each new image is handed to `image_listeners` (the UI's
  ProductImages.image_arrived) from the report thread, never paho's;
- acks are checked by `AckVerifier` (kiosk.sync.acks) inside the client, with the policy's
  keyring and the per-key signed-time high-water marks (`SignedTime`, in the store) that also
  bound commands; the clock offset observes only signed times (acks, accepted commands);
- every rejected downlink message, at every stage (the client's topic and schema checks, the
  policy's TrustErrors except a routine STALE_VERSION, a status reply with an unknown status, a
  refused image, and, through the controller's `payment_rejected` hook = `rejected`, a payment
  confirmation or status reply the sales core refuses) is counted per reason (`mqtt_rejected_*`
  link counters) and raises a SYNC_REJECTED alarm, at most one per (topic kind, reason) per
  `sync.rejection_alarm_every_s` carrying the count (kiosk.sync.rejections); paho's thread only
  counts, the report thread appends the alarms, and a clean stop appends what is pending;
- reported state on every (re)connect and every `report_every_s`; telemetry (LOW, coalesced)
  every `telemetry_every_s`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from kiosk import __version__
from kiosk.core.payment import PaymentStatusQuery
from kiosk.log import formatter, log_event, redact
from kiosk.sync import apply, messages
from kiosk.sync.acks import AckVerifier, SignedTime
from kiosk.sync.client import SyncClient
from kiosk.sync.clockoffset import ClockOffset
from kiosk.sync.media import DEFAULT_BUDGET_BYTES, MediaCache, MediaFetcher, media_dir
from kiosk.sync.outbox import Priority
from kiosk.sync.port import KioskPort
from kiosk.sync.rejections import RejectionLimiter, alarm_body, what_of_topic, what_of_trust
from kiosk.sync.signing import Keyring, TrustError, TrustPolicy
from kiosk.sync.topics import Topics, parse_topic

__all__ = ["SyncBridge"]

log = logging.getLogger("kiosk.sync.bridge")


class _LogTail(logging.Handler):
    """The last lines logged, for `upload_logs`: the kiosk's own redacted line format
    (kiosk.log.formatter), so a secret never reaches the tail nor the upload."""

    def __init__(self, lines: int = 500) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self.setFormatter(formatter("kv"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # never let logging take the kiosk down
            self.handleError(record)


class SyncBridge:
    """See the module docstring. Nothing runs until `start()`."""

    def __init__(
        self,
        kiosk: KioskPort,
        province_public_key: bytes | None,
        clock_offset: ClockOffset,
        *,
        report_every_s: float = 300.0,
        telemetry_every_s: float = 60.0,
        client_options: Mapping[str, Any] | None = None,
        media_budget_bytes: int = DEFAULT_BUDGET_BYTES,
        media_options: Mapping[str, Any] | None = None,
        root_key: bytes | None = None,
    ) -> None:
        self.kiosk = kiosk
        config, store, clock = kiosk.config, kiosk.store, kiosk.clock
        self.kiosk_id = config.identity.kiosk_id
        self.topics = Topics(self.kiosk_id)
        self.clock_offset = clock_offset
        keyring = Keyring.load(store)
        if province_public_key is not None and len(keyring) == 0:
            # provisioning: the first key comes from the config; later keys only by a signed
            # rotation (never re-add the config key: it may have been retired since)
            keyring.add(province_public_key)
            keyring.save(store)
        self.policy = TrustPolicy(
            keyring,
            store,
            kiosk_id=self.kiosk_id,
            on_reject=self._on_reject,
            clock=clock,
            root_key=root_key,
        )
        if root_key is None:  # an old provisioning: key sets are refused (NO_ROOT_KEY)
            log_event(log, "sync.no_root_key", logging.WARNING, keys=",".join(keyring.ids()))
        # signed time: per-key high-water marks for acks and commands (kiosk.sync.acks)
        self.signed_time = SignedTime(store)
        self.policy.signed_time = self.signed_time
        acks = AckVerifier(
            self.kiosk_id,
            self.signing_keyring,  # the keyring in force: a key set applies to acks at once
            self.signed_time,
            on_reject=self._on_reject,
        )
        # rejected downlink messages: counted on paho's thread, alarms appended by _run
        self.rejections = RejectionLimiter(clock, config.sync.rejection_alarm_every_s)
        self._rejections_lock = threading.Lock()
        self.client = SyncClient(
            config.sync,
            self.kiosk_id,
            kiosk.outbox,
            self.topics,
            clock,
            self.on_message,
            store.counters.current("boot"),
            clock_offset=clock_offset,
            acks=acks,
            on_reject=self._on_bad_message,
            **dict(client_options or {}),
        )
        self.report_every_s = report_every_s
        self.telemetry_every_s = telemetry_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_tail = _LogTail()
        self.commands = apply.Commands(
            kiosk, report=self.report, append=self._append, log_lines=self._log_lines
        )
        self.media = MediaCache(media_dir(config.store.data_dir), media_budget_bytes, clock)
        self.image_listeners: list[Callable[[str], object]] = []
        self._new_images: collections.deque[str] = collections.deque()
        self._media_connected = False
        self.fetcher = MediaFetcher(
            self.media,
            self._request_image,
            clock,
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
        """Stop the report thread; rejection counts still pending go out as alarms now."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.raise_rejection_alarms(flush=True)

    def wait_drained(self, timeout: float, offline_grace_s: float = 2.0) -> int:
        """Wait until the province acknowledged every record (end to end), at most `timeout`,
        and only while the link is up (gone for `offline_grace_s`: stop waiting, the records
        stay in the outbox for the next start). Returns the records left."""
        now = time.monotonic()
        deadline = now + timeout
        offline_since = None if self.client.connected else now - offline_grace_s
        while True:
            left = sum(self.kiosk.outbox.depth().values())
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

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_reporting()
        self.client.stop(timeout)
        self.signed_time.flush()
        self.raise_rejection_alarms(flush=True)  # counted since: in the outbox for next time
        logging.getLogger().removeHandler(self._log_tail)

    # --- the controller's hooks -----------------------------------------------------------

    def wake(self) -> None:
        """A transaction that may have appended outbox records committed: drain now."""
        self.client.wake()

    def payment_query(self, q: PaymentStatusQuery) -> None:
        """The controller asks "was order X paid?" (no confirmation came in time)."""
        body = messages.order_status_request(q.kiosk_id, q.order_id, uuid.uuid4().hex, q.asked_at)
        if not self.client.publish_direct(self.topics.order_status_request, body):
            log_event(log, "sync.status_request_not_sent", logging.WARNING, order=q.order_id)

    # --- uplink ---------------------------------------------------------------------------

    def _append(
        self,
        kind: str,
        body: Mapping[str, Any],
        priority: Priority,
        *,
        coalesce: bool = False,
        event_id: str | None = None,
    ) -> None:
        try:
            self.kiosk.outbox.append(kind, body, priority, coalesce=coalesce, event_id=event_id)
        except Exception as e:  # a full outbox must not take the link down
            log_event(log, "sync.append_failed", logging.ERROR, kind=kind, error=repr(e))
            return
        self.client.wake()

    def _log_lines(self) -> list[str]:
        # again on the way out: a secret registered after its line was logged
        return [redact(line) for line in self._log_tail.lines]

    def _link_counters(self) -> dict[str, int]:
        s = self.client.stats()
        counters = {f"serial_{k}": int(v) for k, v in self.kiosk.link.counters().items()}
        counters.update(
            mqtt_published=s.published,
            mqtt_acked=s.acked,
            mqtt_reconnects=s.reconnects,
            mqtt_connect_failures=s.connect_failures,
            mqtt_bad_messages=s.bad_messages,
            mqtt_puback_failures=s.puback_failures,
        )
        with self._rejections_lock:
            counters["mqtt_rejected"] = self.rejections.total
            by_reason = self.rejections.by_reason()
        counters.update({f"mqtt_rejected_{r.lower()}": n for r, n in by_reason.items()})
        return counters

    def report(self) -> None:
        """Append the reported state (NORMAL): versions applied, stock, software, counters."""
        k = self.kiosk
        ob = k.outbox
        view = k.controller.view()
        reason = view.out_of_service.reason_key if view.out_of_service is not None else ""
        body = messages.reported_state(
            applied_versions={
                **self.policy.applied_versions(),
                "catalog_in_store": k.store.catalog.version(),
            },
            stock=k.store.stock.levels(),
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
        view = self.kiosk.controller.view()
        metrics: dict[str, float | int | str | bool | None] = {
            "mode": view.mode,
            "board_online": self.kiosk.link.online,
            "mqtt_connected": s.connected,
            "outbox_depth": sum(self.kiosk.outbox.depth().values()),
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
                self.raise_rejection_alarms()
            except Exception:
                log.exception("sync.rejection_alarms_failed")
            try:
                self._media_step()
            except Exception:
                log.exception("media.step_failed")

    # --- media ----------------------------------------------------------------------------

    def _want_catalog_images(self) -> None:
        self.fetcher.want(p.image_ref for p in self.kiosk.store.catalog.load())

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

    # --- downlink: routing ----------------------------------------------------------------

    def signing_keyring(self) -> Keyring:
        """The keyring in force (swapped when a root-signed key set is applied), never with
        the root key in it (even a keyring that predates the root): what acks are verified
        with; the root signs key sets only."""
        ring, root_kid = self.policy.keyring, self.policy.root_kid
        if root_kid is None or root_kid not in ring.ids():
            return ring
        ring = ring.copy()
        ring.retire(root_kid)
        return ring

    def province_keys(self) -> list[bytes]:
        """The trusted province signing keys now (payment confirmations are verified with
        them: a key a root-signed key set retired is dead for confirmations too)."""
        ring = self.signing_keyring()
        return [k for kid in ring.ids() if (k := ring.get(kid)) is not None]

    # --- downlink: rejections ------------------------------------------------------------

    def rejected(self, what: str, reason: str, detail: str = "") -> None:
        """Count one rejected message (any thread; never touches the store). Also the
        controller's `payment_rejected` hook: a payment confirmation or status reply whose
        signature, kiosk, order, amount or age does not check out."""
        with self._rejections_lock:
            self.rejections.record(what, reason, detail)

    def _on_bad_message(self, topic: str, reason: str, detail: str) -> None:
        """SyncClient's hook (paho's thread): a message its topic or schema checks refused."""
        self.rejected(what_of_topic(topic, self.topics.prefix), reason, detail)

    def _on_reject(self, what: str, err: TrustError) -> None:
        """TrustPolicy's hook: a signed message refused (not a routine STALE_VERSION)."""
        log_event(
            log,
            "sync.rejected",
            logging.WARNING,
            what=what[:80],
            reason=err.reason.value,
            detail=err.detail[:200],
        )
        self.rejected(what_of_trust(what), err.reason.value, err.detail)

    def raise_rejection_alarms(self, *, flush: bool = False) -> int:
        """Append the SYNC_REJECTED alarms that are due (all pending ones with `flush`); from
        the report thread or a stopping thread, never paho's. Returns how many."""
        with self._rejections_lock:
            due = self.rejections.flush() if flush else self.rejections.take()
        for a in due:
            log_event(
                log,
                "sync.rejection_alarm",
                logging.WARNING,
                what=a.what,
                reason=a.reason,
                count=a.count,
            )
            self._append(
                "alarm",
                alarm_body(a),
                Priority.HIGH,
                event_id=f"alarm-{self.kiosk_id}-rej-{uuid.uuid4().hex}",
            )
        return len(due)

    def on_message(self, topic: str, body: dict[str, Any]) -> None:
        """SyncClient's handler (paho's network thread): decoded, schema-checked messages."""
        parsed = parse_topic(topic, self.topics.prefix)
        kind = parsed.message_kind if parsed is not None else None
        controller = self.kiosk.controller
        try:
            if kind == "payment_confirm":
                controller.submit_confirmation(body["confirmation"])
            elif kind == "order_status_reply":
                reply = apply.status_reply_from_wire(body)
                if reply is None:
                    status = str(body.get("status"))[:40]
                    log_event(log, "sync.bad_status", logging.WARNING, status=status)
                    self.rejected("orders/status/reply", "BAD_VALUE", f"status {status!r}")
                else:
                    controller.submit_status_reply(reply)
            elif kind == "desired" and parsed is not None:
                self._versioned(parsed.sub, body)
            elif kind == "catalog":
                self._versioned("catalog", body)
            elif kind == "keys":
                self.policy.accept_keys(body)
            elif kind == "command":
                self._command(body)
            elif kind == "image":  # media: a reply or a retained province-wide image
                refused = self.fetcher.rejected
                self.fetcher.on_image(str(body["sha256"]), bytes(body["data"]))
                if self.fetcher.rejected > refused:  # verified by hash, but not an image we take
                    self.rejected(what_of_topic(topic, self.topics.prefix), "IMAGE_REFUSED", "")
            else:
                log_event(log, "sync.ignored", topic=topic)
        except TrustError:
            pass  # logged by the policy, counted (and an alarm raised) by _on_reject

    def _versioned(self, name: str, env: dict[str, Any]) -> None:
        store = self.kiosk.store
        appliers: dict[str, Callable[[dict[str, Any]], None]] = {
            "catalog": lambda body: apply.apply_catalog(store, body),
            "planogram": lambda body: apply.apply_planogram(self.kiosk, body),
            "prices": lambda body: apply.apply_prices(store, body),
            "config": lambda body: apply.apply_config(store, body),
        }
        self.policy.accept_versioned(name, env, appliers[name])
        self.kiosk.controller.reload()
        self.report()
        if name == "catalog":
            self._want_catalog_images()  # media: the new catalog may name new images

    def _command(self, env: dict[str, Any]) -> None:
        now = self.kiosk.clock.time()
        body = self.policy.accept_command(env, self.clock_offset.province_now(now))
        self.clock_offset.observe(body["issued_at"], now)  # signed, checked fresh by the policy
        try:
            self.commands.run(body)
        except TrustError as e:
            self._on_reject(f"command:{body['command']}", e)
            raise

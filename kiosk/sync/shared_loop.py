"""One thread driving many SyncClients: paho on an external event loop (no thread per client).

A kiosk runs one SyncClient on threads of its own (the connection supervisor, the drain thread
and paho's network thread). The fleet simulator (kiosk.sim.fleet_workers) runs 125 or more
kiosks per process; three threads each made 1,000 kiosks 3,000 threads fighting over two cores
and one interpreter lock per process. `SyncClient.start(loop)` runs a client here instead: the
same client code (`_open_connection`, `_connection_up`, `_connection_down`, the drain's
`drain_once`, the same backoff), stepped by one `selectors` loop, with paho driven the way its
documentation describes for an external event loop: the loop watches each client's socket and
calls `loop_read()` / `loop_write()` / `loop_misc()`; paho asks for write readiness through its
`on_socket_register_write` / `on_socket_unregister_write` callbacks and says when it closes a
socket through `on_socket_close`.

Owns: the loop thread, its selector, a timer heap (`call_at`, also the simulator's scheduler)
and per client its connection state: waiting out the backoff, waiting for the CONNACK, up, or
saying "offline" before it stops.

Must: touch a client's paho object only on the loop thread (`call_at`/`call_soon` and
`SyncClient.wake()` may be called from any thread; `publish_direct` only from a callback run on
the loop). Must never: block on a peer. The one exception is paho's `connect()`: the TCP connect
and TLS handshake are blocking calls inside paho (bounded by the client's connect timeout); a
worker's other clients wait meanwhile, which is why connects are paced.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kiosk.sync.connection import Connection

if TYPE_CHECKING:
    from kiosk.sync.client import SyncClient

from kiosk.sync.client import connack_problem

__all__ = ["SyncLoop"]

log = logging.getLogger("kiosk.sync.shared_loop")

_WAIT, _CONNECTING, _UP, _STOPPING = "wait", "connecting", "up", "stopping"
_RW = selectors.EVENT_READ | selectors.EVENT_WRITE


class _Driven:
    """One client on the loop: its state, its connection and when it wants its next step."""

    def __init__(self, client: SyncClient) -> None:
        self.client = client
        self.state = _WAIT
        self.conn: Connection | None = None
        self.sock: Any = None
        self.retry_at = 0.0
        self.deadline = 0.0  # CONNACK wait or "offline" PUBACK wait ends
        self.up_at = 0.0
        self.misc_at = 0.0
        self.token = 0  # the valid timer entry of this client (older ones are skipped)
        self.done: threading.Event | None = None


class SyncLoop:
    """`start()` the thread, `SyncClient.start(loop)` each client, `close()` at the end (after
    the clients' `stop()`). `misc_s`: how often paho's `loop_misc()` (keepalive) runs."""

    def __init__(self, name: str = "sync-loop", misc_s: float = 1.0) -> None:
        self.name = name
        self._misc_s = misc_s
        self._sel = selectors.DefaultSelector()
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._sel.register(self._r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._woken: set[_Driven] = set()
        self._driven: dict[int, _Driven] = {}  # id(client) -> state
        self._thread: threading.Thread | None = None
        self._closing = False
        self.steps = 0  # client steps run (for profiling the simulator)

    # --- any thread ---------------------------------------------------------------------------

    def start(self) -> SyncLoop:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        self._closing = True
        self._notify()
        if self._thread is not None:
            self._thread.join(timeout)
        self._sel.close()
        self._r.close()
        self._w.close()

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Run `fn` on the loop thread at `when` (time.monotonic())."""
        with self._lock:
            heapq.heappush(self._timers, (when, next(self._seq), fn))
        self._notify()

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.call_at(0.0, fn)

    def add(self, client: SyncClient) -> None:
        """Called by `SyncClient.start(loop)`: connect now, then keep it connected."""
        d = _Driven(client)
        self.call_soon(lambda: self._add(d))

    def wake(self, client: SyncClient) -> None:
        """Called by `SyncClient.wake()`: records were appended, step its drain now."""
        d = self._driven.get(id(client))
        if d is not None:
            with self._lock:
                self._woken.add(d)
            self._notify()

    def remove(self, client: SyncClient, timeout: float) -> bool:
        """Called by `SyncClient.stop()`: say "offline", disconnect, write back PUBACKed
        records, forget the client. False if that took longer than `timeout`."""
        done = threading.Event()
        self.call_soon(lambda: self._begin_stop(client, done))
        return done.wait(timeout)

    def _notify(self) -> None:
        if threading.current_thread() is self._thread:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            self._w.send(b"\0")

    # --- the loop thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closing:
            try:
                self._once()
            except Exception:  # the loop must survive anything one client does
                log.exception("sync loop step failed")

    def _once(self) -> None:
        with self._lock:
            first = self._timers[0][0] if self._timers else None
        timeout = 1.0 if first is None else max(0.0, min(1.0, first - time.monotonic()))
        with self._lock:
            if self._woken:
                timeout = 0.0
        for key, mask in self._sel.select(timeout):
            d = key.data
            if d is None:
                with contextlib.suppress(BlockingIOError):
                    self._r.recv(4096)
                continue
            self._io(d, mask)
        self._run_timers()
        with self._lock:
            woken, self._woken = self._woken, set()
        for d in woken:
            self._step(d)

    def _io(self, d: _Driven, mask: int) -> None:
        conn = d.conn
        if conn is None:
            return
        client = conn.client
        try:
            if mask & selectors.EVENT_READ:
                client.loop_read()
                # TLS: what was decrypted beyond one packet waits in the SSL object, where
                # select() cannot see it (paho's own loop checks `pending()` the same way)
                sock = client.socket()
                for _ in range(1000):
                    if sock is None or not getattr(sock, "pending", lambda: 0)():
                        break
                    client.loop_read()
                    sock = client.socket()
            if mask & selectors.EVENT_WRITE and client.socket() is not None:
                client.loop_write()
        except Exception:
            log.exception("sync loop: paho I/O failed")
            conn.ended.set()
        self._step(d)

    def _run_timers(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._timers or self._timers[0][0] > now:
                    return
                _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:
                log.exception("sync loop: a scheduled call failed")

    def _schedule(self, d: _Driven, when: float) -> None:
        d.token += 1
        token = d.token

        def fire() -> None:
            if d.token == token:
                self._step(d)

        with self._lock:
            heapq.heappush(self._timers, (when, next(self._seq), fire))

    def _add(self, d: _Driven) -> None:
        self._driven[id(d.client)] = d
        self._step(d)

    # --- one client's connection --------------------------------------------------------------

    def _step(self, d: _Driven) -> None:
        self.steps += 1
        now = time.monotonic()
        if d.state == _WAIT:
            if now >= d.retry_at:
                self._connect(d, now)
            else:
                self._schedule(d, d.retry_at)
        elif d.state == _CONNECTING:
            self._connecting(d, now)
        elif d.state == _UP:
            self._up(d, now)
        elif d.state == _STOPPING:
            conn = d.conn
            over = conn is None or conn.offline_acked.is_set() or conn.ended.is_set()
            if over or now >= d.deadline:
                self._finish(d)
            else:
                self._schedule(d, d.deadline)

    def _connect(self, d: _Driven, now: float) -> None:
        c = d.client
        conn = c._open_connection()
        if conn is None:
            self._retry(d, 0.0)
            return
        d.conn, d.state = conn, _CONNECTING
        d.deadline = now + c._connack_timeout_s
        self._watch(d, conn)
        self._schedule(d, d.deadline)

    def _watch(self, d: _Driven, conn: Connection) -> None:
        """Register the connected socket and paho's callbacks for it."""
        client = conn.client
        sock = client.socket()
        if sock is None:
            conn.ended.set()
            return
        d.sock = sock
        sel = self._sel

        def want_write(_c: Any, _u: Any, s: Any) -> None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                sel.modify(s, _RW, d)

        def no_write(_c: Any, _u: Any, s: Any) -> None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                sel.modify(s, selectors.EVENT_READ, d)

        def closed(_c: Any, _u: Any, s: Any) -> None:
            self._unwatch(d)

        client.on_socket_register_write = want_write
        client.on_socket_unregister_write = no_write
        client.on_socket_close = closed
        sel.register(sock, _RW if client.want_write() else selectors.EVENT_READ, d)

    def _unwatch(self, d: _Driven) -> None:
        if d.sock is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._sel.unregister(d.sock)
            d.sock = None

    def _connecting(self, d: _Driven, now: float) -> None:
        conn, c = d.conn, d.client
        assert conn is not None
        if conn.connack.is_set() and conn.accepted and not conn.ended.is_set():
            d.up_at = c._connection_up(conn)
            d.state = _UP
            d.misc_at = now + self._misc_s
            self._up(d, now)
        elif conn.connack.is_set() or now >= d.deadline:
            c._count_connect_failure(connack_problem(conn))
            self._down(d)
            self._retry(d, 0.0)
        else:
            self._schedule(d, d.deadline)

    def _up(self, d: _Driven, now: float) -> None:
        conn, c = d.conn, d.client
        assert conn is not None
        if not conn.ended.is_set():
            drain = c._drain
            for _ in range(8):  # the drain thread's loop: again at once while it publishes
                if drain.drain_once() == 0:
                    break
            if now >= d.misc_at:
                d.misc_at = now + self._misc_s
                conn.client.loop_misc()
        if conn.ended.is_set():
            lasted = c.clock.monotonic() - d.up_at
            self._down(d)
            self._retry(d, lasted)
            return
        self._schedule(d, min(now + c._drain._idle_wait(), d.misc_at))

    def _down(self, d: _Driven) -> None:
        conn = d.conn
        if conn is None:
            return
        self._unwatch(d)
        with contextlib.suppress(Exception):
            if not conn.ended.is_set():
                conn.client.disconnect()
                conn.client.loop_write()  # the DISCONNECT goes out now: no thread to send it
        d.client._connection_down(conn)
        d.client._drain.drain_once()  # takes the PUBACKs that arrived, writes them back
        d.conn = None

    def _retry(self, d: _Driven, lasted: float) -> None:
        d.state = _WAIT
        d.retry_at = time.monotonic() + d.client._retry_delay(lasted)
        self._schedule(d, d.retry_at)

    # --- stopping -----------------------------------------------------------------------------

    def _begin_stop(self, client: SyncClient, done: threading.Event) -> None:
        d = self._driven.get(id(client))
        if d is None:
            done.set()
            return
        d.done = done
        conn = d.conn
        if d.state != _UP or conn is None or conn.ended.is_set():
            self._finish(d)
            return
        # "offline" (retained), like SyncClient._say_offline, without waiting on this thread
        mid = client._publish(
            conn, client.topics.status, client._status_payload("offline"), None, retain=True
        )
        if mid is None:
            self._finish(d)
            return
        conn.offline_mid = mid
        d.state, d.deadline = _STOPPING, time.monotonic() + 2.0
        self._schedule(d, d.deadline)

    def _finish(self, d: _Driven) -> None:
        d.token += 1  # no more steps
        self._down(d)
        d.client._drain.flush_marks(force=True)
        with d.client._lock:
            d.client._stats.next_retry_s = 0.0
        self._driven.pop(id(d.client), None)
        with self._lock:
            self._woken.discard(d)
        if d.done is not None:
            d.done.set()

"""Store.change_token and the outbox's cached last seq (the publisher's idle poll): equal
tokens mean nothing was written; a write by this process or by another one on the same files
changes it. Real SQLite files, two connections as two processes would have."""

from __future__ import annotations

from pathlib import Path

from kiosk.clock import SystemClock
from kiosk.store import open_store
from kiosk.sync import messages
from kiosk.sync.outbox import Outbox, Priority
from kiosk.sync.topics import Topics

KIOSK = "AH-340100-0001"


def test_the_token_moves_with_every_write_from_either_connection(tmp_path: Path) -> None:
    a, b = open_store(tmp_path), open_store(tmp_path)
    try:
        t0 = a.change_token()
        assert a.change_token() == t0  # nothing written: the same token
        a.counters.current("boot")
        assert a.change_token() == t0  # reads do not move it
        b.counters.next_value("x")  # the other connection commits
        t1 = a.change_token()
        assert t1 != t0
        a.counters.next_value("y")  # this one writes
        t2 = a.change_token()
        assert t2 != t1
        try:
            with a.transaction() as conn:
                conn.execute("INSERT INTO counters (name, value) VALUES ('z', 1)")
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        assert a.change_token() != t2  # a rolled-back write moves it too (conservative)
    finally:
        a.close()
        b.close()


def test_last_seq_sees_another_connections_append_and_its_own(tmp_path: Path) -> None:
    a, b = open_store(tmp_path), open_store(tmp_path)
    try:
        ours = Outbox(a, Topics(KIOSK), SystemClock())
        theirs = Outbox(b, Topics(KIOSK), SystemClock())
        assert ours.last_seq() == 0
        body = messages.alarm("TEST", "a test alarm")
        r1 = theirs.append("alarm", body, Priority.HIGH)
        assert ours.last_seq() == r1.seq
        r2 = ours.append("alarm", body, Priority.HIGH)
        assert ours.last_seq() == r2.seq
        r3 = theirs.append("alarm", body, Priority.HIGH)
        assert ours.last_seq() == r3.seq == theirs.last_seq()
    finally:
        a.close()
        b.close()

"""From nothing to selling, exactly as docs/technician-guide.md section 0 tells a technician.

The test reads the guide's section-0 command blocks and runs every command as a subprocess, in
order, changing only what must differ on a test machine: `/tmp/kiosk-demo` and
`/tmp/kiosk-board` become temporary paths, the ports 8883 / 8884 / 8885 / 8780 become free ports
(the broker and the province simulator get `--port/--bootstrap-port/--backend-port` and
`--http-port` for them), and
each `<...>` placeholder becomes what an earlier command printed (the CA and province key
fingerprints); the one-time token is typed at `register`'s prompt (its standard input).
`kiosk` and `kiosk-provision` run as `python -m kiosk.cli` and `python -m provisioning.cli`.

Long-running commands (board emulator, broker with its mutual-TLS and bootstrap listeners,
province simulator) stay up in the background. The kiosk registers over the bootstrap listener,
self-tests over mutual TLS (first with the jammed slot, then clean), and `kiosk run --script buy3
--pay-via-province` sells: the test pays on the province simulator's pay page like a shopper's
phone, and the sale record must reach the province (its report shows the kiosk's ledger chain).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from kiosk.sim.broker import find_mosquitto, free_port

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "technician-guide.md"
KIOSK_ID = "AH-340102-0007"

# What section 0 must contain, in this order (a prefix of each command line).
EXPECTED = [
    "kiosk emulator --pty",
    "python -m kiosk.sim.broker",
    "kiosk province-sim --data-dir",
    "kiosk province-sim issue-token",
    "kiosk-provision init --non-interactive",
    "kiosk-provision keys",
    "kiosk-provision register",
    "kiosk-provision selftest",
    "kiosk emulator ctl",
    "kiosk-provision selftest",
    "kiosk board status",
    "kiosk-provision status",
    "kiosk store seed-demo",
    "kiosk run",
    "kiosk ledger verify",
    "kiosk province-sim report",
]


def guide_commands() -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("\n## 0.", 1)[1].split("\n## 1.", 1)[0]
    out: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.strip().startswith("#"):
                out.append(" ".join(line.split()))
    return out


class Proc:
    """A child whose stdout/stderr lines are collected by threads."""

    def __init__(
        self, argv: list[str], env: dict[str, str], cwd: Path, typed: str | None = None
    ) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL if typed is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
        if typed is not None:  # what the person types at the command's prompt
            assert self.proc.stdin is not None
            self.proc.stdin.write(typed)
            self.proc.stdin.close()
        self.out: list[str] = []
        self.err: list[str] = []
        self._lock = threading.Lock()
        self._pumps = [
            threading.Thread(target=self._pump, args=(s, sink), daemon=True)
            for s, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for t in self._pumps:
            t.start()

    def _pump(self, stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                sink.append(line.rstrip("\n"))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.out)

    def dump(self) -> str:
        with self._lock:
            return (
                f"$ {shlex.join(self.argv)}\nexit={self.proc.poll()}\n--- stdout ---\n"
                + "\n".join(self.out)
                + "\n--- stderr (tail) ---\n"
                + "\n".join(self.err[-40:])
            )

    def wait_for(self, pred: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                lines = self.out + self.err
            for line in lines:
                if pred(line):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no expected line within {timeout} s\n{self.dump()}")

    def finish(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"still running after {timeout} s\n{self.dump()}") from None
        for t in self._pumps:
            t.join(5)
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Walkthrough:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.demo = tmp / "demo"
        self.board = tmp / "board"
        self.ports = {
            "8883": free_port(),
            "8884": free_port(),
            "8885": free_port(),
            "8780": free_port(),
        }
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK")}
        # what the guide has the technician do before `init` (`read -rs KIOSK_PROVISION_PIN`):
        # the PIN is never on a command line
        self.env["KIOSK_PROVISION_PIN"] = "802461"
        self.env["PYTHONPATH"] = str(ROOT)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.placeholders: dict[str, str] = {}
        self.background: list[Proc] = []
        self.t0 = time.monotonic()

    def log(self, what: str) -> None:
        """Step timings, shown with the output of a failed test."""
        print(f"[{time.monotonic() - self.t0:6.1f} s] {what}", flush=True)

    def argv(self, command: str) -> list[str]:
        text = command.replace("/tmp/kiosk-demo", str(self.demo))
        text = text.replace("/tmp/kiosk-board", str(self.board))
        for default, port in self.ports.items():
            text = text.replace(f"127.0.0.1:{default}", f"127.0.0.1:{port}")

        def fill(m: re.Match[str]) -> str:
            flag = m.group(1)
            assert flag in self.placeholders, f"nothing printed yet for {flag} in {command!r}"
            return f"{flag} {self.placeholders[flag]}"

        text = re.sub(r"(--[a-z-]+) <[^>]*>", fill, text)
        words = shlex.split(text)
        head = {
            "kiosk": [sys.executable, "-m", "kiosk.cli"],
            "kiosk-provision": [sys.executable, "-m", "provisioning.cli"],
            "python": [sys.executable],
            "python3": [sys.executable],
        }[words[0]]
        argv = head + words[1:]
        if words[1:3] == ["-m", "kiosk.sim.broker"]:
            argv += ["--port", str(self.ports["8883"]), "--bootstrap-port", str(self.ports["8884"])]
            argv += ["--backend-port", str(self.ports["8885"])]
        if words[1] == "province-sim" and words[2].startswith("--"):
            argv += ["--http-port", str(self.ports["8780"])]
        return argv

    def start(self, command: str) -> Proc:
        self.log(f"start {command[:70]}")
        p = Proc(self.argv(command), self.env, self.tmp)
        self.background.append(p)
        return p

    def run(
        self, command: str, expect: int = 0, timeout: float = 60, typed: str | None = None
    ) -> str:
        self.log(f"run {command[:70]}")
        p = Proc(self.argv(command), self.env, self.tmp, typed)
        rc = p.finish(timeout)
        assert rc == expect, f"exit {rc}, expected {expect}\n{p.dump()}"
        return p.text()

    def close(self) -> None:
        for p in reversed(self.background):
            p.stop()


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walkthrough]:
    find_mosquitto()  # a missing broker is a failure with instructions, never a skip
    w = Walkthrough(tmp_path)
    yield w
    w.close()


def _fingerprint(line: str) -> str:
    m = re.search(r"SHA-256 ([0-9A-F:]{95})", line)
    assert m, line
    return m.group(1)


def test_guide_section_0_from_nothing_to_selling(walk: Walkthrough) -> None:
    cmds = guide_commands()
    assert len(cmds) == len(EXPECTED), cmds
    for cmd, prefix in zip(cmds, EXPECTED, strict=True):
        assert cmd.startswith(prefix), (cmd, prefix)
    (
        emulator,
        broker,
        province,
        issue_token,
        init,
        keys,
        register,
        selftest_jammed,
        unjam,
        selftest,
        board_status,
        status,
        seed,
        run,
        ledger,
        report,
    ) = cmds
    assert "--bootstrap-url mqtts://127.0.0.1:8884" in register
    assert "--broker-url mqtts://127.0.0.1:8883" in init

    # terminals 1-3: board, broker (two TLS listeners), province simulator
    emu = walk.start(emulator)
    b = walk.start(broker)
    ca_fp = _fingerprint(b.wait_for(lambda s: s.strip().startswith("CA "), 20))
    deadline = time.monotonic() + 10
    while not walk.board.exists():
        assert time.monotonic() < deadline, emu.dump()
        time.sleep(0.05)
    prov = walk.start(province)
    key_fp = _fingerprint(prov.wait_for(lambda s: "province public key:" in s, 20))
    root_fp = _fingerprint(prov.wait_for(lambda s: "province root key:" in s, 20))
    prov.wait_for(lambda s: "province.connected" in s, 20)
    token = walk.run(issue_token).strip().splitlines()[-1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{16,}", token), token
    walk.placeholders.update(
        {
            "--ca-fingerprint": ca_fp,
            "--province-key-fingerprint": key_fp,
            "--province-root-key-fingerprint": root_fp,
        }
    )

    # terminal 4: the technician
    out = walk.run(init)
    assert ca_fp in out and key_fp in out and root_fp in out
    walk.run(keys)
    assert "--token" not in register  # typed at its prompt, never on the command line
    out = walk.run(register, typed=token + "\n")
    assert f"registered {KIOSK_ID}" in out and token not in out
    out = walk.run(selftest_jammed, expect=1)
    assert re.search(r"board0\.slots\s+FAIL .*3 JAMMED", out), out
    assert re.search(r"broker\s+OK .*client cert", out), out
    walk.run(unjam)
    out = walk.run(selftest)
    assert "PASS" in out, out
    walk.run(board_status)
    out = walk.run(status)
    assert re.search(r"mutual_tls\s+True", out) and "reachable" in out, out

    # selling, paid on the province's pay page like a shopper's phone
    walk.run(seed)
    kiosk = walk.start(run)
    line = kiosk.wait_for(lambda s: s.startswith("pay url "), 60)
    url = urlsplit(line.split(" ", 2)[2])
    form = dict(parse_qsl(url.query))
    form["method"] = "wechat"
    with urllib.request.urlopen(
        f"{url.scheme}://{url.netloc}{url.path}", urlencode(form).encode(), timeout=10
    ) as resp:
        assert resp.status == 200
    assert kiosk.finish(90) == 0, kiosk.dump()
    text = kiosk.text()
    assert re.search(r"order \S+: \w+, paid [1-9]\d* fen, delivered [1-9]\d* fen", text), text
    out = walk.run(ledger)
    m = re.search(r"ledger: (\d+) records, chain intact", out)
    assert m and int(m.group(1)) >= 1, out

    # the sale record reached the province over MQTT (mutual TLS), chain intact there
    deadline = time.monotonic() + 20
    while True:
        p = Proc(walk.argv(report), walk.env, walk.tmp)
        rc = p.finish(30)
        m = re.search(rf"{KIOSK_ID}\s+(\d+) sale records\s+OK", p.text())
        if rc == 0 and m and int(m.group(1)) >= 1:
            break
        assert time.monotonic() < deadline, p.dump()
        time.sleep(0.5)

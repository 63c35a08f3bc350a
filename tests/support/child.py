"""A child process whose output lines the test reads as they come, and `kiosk run` as one."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.paths import child_env


class Child:
    """A child process whose stdout and stderr lines are collected by threads."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._lock = threading.Lock()
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream: object, sink: list[str]) -> None:
        assert stream is not None
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                sink.append(line.rstrip("\n"))

    def lines(self, err: bool = False) -> list[str]:
        with self._lock:
            return list(self.err if err else self.out)

    def wait_line(
        self, pred: Callable[[str], bool], timeout: float, *, err: bool = False, start: int = 0
    ) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, line in enumerate(self.lines(err)[start:], start):
                if pred(line):
                    return i, line
            if self.proc.poll() is not None and not any(map(pred, self.lines(err)[start:])):
                break
            time.sleep(0.05)
        raise AssertionError(f"no matching line; {self.dump()}")

    def dump(self) -> str:
        return (
            f"exit={self.proc.poll()}\n--- stdout ---\n"
            + "\n".join(self.lines())
            + "\n--- stderr (tail) ---\n"
            + "\n".join(self.lines(err=True)[-60:])
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def run_kiosk(cfg: Path, *args: str) -> Child:
    """`python -m kiosk.cli run --headless --config CFG ARGS...` in ``cfg``'s directory,
    without any crash-injection or systemd-notify variables of this process."""
    return Child(
        [sys.executable, "-m", "kiosk.cli", "run", "--headless", "--config", str(cfg), *args],
        child_env("KIOSK_CRASH", "NOTIFY_"),
        cfg.parent,
    )

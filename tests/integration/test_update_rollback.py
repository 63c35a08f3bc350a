"""Updates on this machine (issue 16 req. 7, with req. 3, 4, 5): two real releases, a kiosk
under the supervisor, a good update committed and a bad one rolled back by itself.

Pieces: the `kiosk_world` fixture (Mosquitto, the province simulator, the board emulator, a
headless kiosk config), a release key, and two releases built by `kiosk release build` from
copies of this source tree: version `<v>+good`, and `<v>+bad` whose `kiosk run` exits 1 at
once (its `kiosk config check` still passes, so it installs). The update root starts with
`current` running this source tree, as a cabinet provisioned by hand.

1. Sales before: `--script buy3` on the source version; the province has the sale.
2. The supervisor (copied out of the package, run with `python -I`: it imports no kiosk code)
   runs the kiosk headless. `kiosk update apply GOOD` verifies, installs into a new venv with
   `--no-index --require-hashes`, checks the config with the new version and stages it; the
   running kiosk, idle, shows "updating" and switches; the new version starts on trial (still
   "updating", no sale), reaches READY and pets its watchdog (UI loop, controller, board link,
   store, province link): committed, and it opens for sale without a restart.
3. The province rolls the bad release out (`release publish`, `rollout start --waves 10%,100%`
   over ten cabinets of which this kiosk alone is the first wave; the rollout driver sends the
   signed `install_release` command with the bad release's https:// URL): the good version
   fetches it (signature first), installs and stages it, and switches when
   idle; three boots that crash, rolled back to the good version by the supervisor, which the
   kiosk reports (`events/update` steps and an `UPDATE_ROLLED_BACK` alarm at the province); the
   rollout aborts after its first wave (no other cabinet is commanded).
4. Sales after, on the good version's venv: the store, the ledger and the outbox came through.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kiosk import __version__
from kiosk.sim.province import ProvinceSimulator
from kiosk.sim.rollout import FleetCabinet, Rollout, wave_members
from kiosk.sim.rollout_shell import RolloutDriver, read_rollout
from kiosk.update.supervisor import current_target, load_state
from tests.support.child import Child
from tests.support.fixtures import KioskWorld
from tests.support.kiosk_node import KIOSK_A
from tests.support.paths import ROOT, child_env
from tests.support.release_server import serve_https
from tests.support.releases import build_release, source_copy, source_version_root

GOOD, BAD = f"{__version__}+good", f"{__version__}+bad"


def wait_for(what: str, cond: Callable[[], bool], timeout: float, dump: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{dump()}")


def installed_env() -> dict[str, str]:
    """No PYTHONPATH: an installed version runs its own code, not this source tree."""
    env = child_env("KIOSK_CRASH", "NOTIFY_", "PIP_", "WATCHDOG_")
    env.pop("PYTHONPATH", None)
    return env


def cli(exe: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(exe)] if exe else [sys.executable, "-m", "kiosk.cli"]
    return subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        env=installed_env() if exe else child_env("KIOSK_CRASH", "NOTIFY_"),
        cwd=ROOT,
        timeout=900,
    )


def buy3(world: KioskWorld, exe: Path | None = None) -> None:
    argv = [str(exe)] if exe else [sys.executable, "-m", "kiosk.cli"]
    k = Child(
        [
            *(*argv, "run", "--headless", "--config", str(world.config)),
            *("--script", "buy3", "--test-payments", "--timeout", "90"),
        ],
        installed_env() if exe else child_env("KIOSK_CRASH", "NOTIFY_"),
        world.config.parent,
    )
    try:
        assert k.proc.wait(400) == 0, k.dump()
    finally:
        k.stop()


def rollout(province: ProvinceSimulator) -> Rollout:
    loaded = read_rollout(province.data_dir)
    assert loaded is not None
    return loaded[0]


@contextlib.contextmanager
def rollout_to_wave_one(
    province: ProvinceSimulator, release: Path, pub: Path, url: str, tmp_path: Path
) -> Iterator[None]:
    """The bad release reaches the kiosk through a real rollout: `release publish`, `rollout
    start` over a fleet of ten where this kiosk alone is the first wave (10 %; the nine others
    do not exist), ticked by the province's rollout driver."""
    data = ["--data-dir", str(province.data_dir)]
    others = (f"AH-340100-{9000 + i}" for i in range(1000))
    probe = Rollout(version=BAD, url=url)
    later = [
        k
        for k in others
        if wave_members(probe, [FleetCabinet(KIOSK_A), FleetCabinet(k)], 0)[0] == KIOSK_A
    ]
    fleet = tmp_path / "fleet.csv"
    fleet.write_text("\n".join([KIOSK_A, *later[:9]]) + "\n", encoding="utf-8")
    published = cli(
        None, "province-sim", "release", "publish", str(release), "--public-key", str(pub), *data
    )
    assert published.returncode == 0, published.stdout + published.stderr
    started = cli(
        None,
        *("province-sim", "rollout", "start", BAD, "--url", url, "--fleet", str(fleet)),
        *("--waves", "10%,100%", "--soak", "1s", "--max-failures", "0%", *data),
    )
    assert started.returncode == 0, started.stdout + started.stderr
    driver = RolloutDriver(province, province.data_dir, tick_s=0.5).start()
    try:
        yield
    finally:
        driver.stop()


def orders(data: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(data / "kiosk.db")
    try:
        return int(conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.timeout(2400)  # three pip builds and installs on a loaded 2-core box
def test_good_update_commits_and_bad_update_rolls_back(
    kiosk_world: KioskWorld, province: ProvinceSimulator, tmp_path: Path
) -> None:
    world = kiosk_world
    root = tmp_path / "opt-kiosk"
    key, pub = tmp_path / "release.pem", tmp_path / "release.pub"
    assert cli(None, "release", "keygen", str(key), str(pub)).returncode == 0
    served = tmp_path / "served"
    good = build_release(source_copy(tmp_path / "src-good", GOOD), served / "rel-good", key)
    assert good.returncode == 0, good.stderr[-3000:]
    bad_src = source_copy(tmp_path / "src-bad", BAD, crash_at_start=True)
    bad = build_release(bad_src, served / "rel-bad", key)
    assert bad.returncode == 0, bad.stderr[-3000:]
    source_version_root(root)
    with world.config.open("a") as f:
        f.write(
            f'\n[update]\nrelease_public_key = "{pub}"\nroot = "{root}"\n'
            "health_timeout_s = 600\nmax_boots = 3\n"
        )

    # 1. sales before, on the version the cabinet was provisioned with
    buy3(world)
    before = orders(world.data)
    assert before >= 1 and province.event_count(KIOSK_A, "sale") >= 1

    # 2. the supervisor runs the kiosk; the good release is applied and committed
    cli(None, "update", "install-supervisor", "--config", str(world.config))
    sup = Child(
        [
            *(sys.executable, "-I", str(root / "supervisor.py"), "--config", str(world.config)),
            *("--watchdog-usec", "2000000", "--restart-delay", "1", "--"),
            *("run", "--headless", "--config", str(world.config)),
        ],
        installed_env(),
        world.config.parent,
    )
    stack = contextlib.ExitStack()
    try:
        sup.wait_line(lambda s: "running headless" in s, 300)
        applied = cli(
            None, "update", "apply", str(served / "rel-good"), "--config", str(world.config)
        )
        assert applied.returncode == 0, applied.stdout + applied.stderr[-3000:]
        assert f"version {GOOD} staged" in applied.stdout
        wait_for(
            "the good version committed",
            lambda: load_state(root)["running"] == GOOD and load_state(root)["phase"] == "idle",
            600,
            sup.dump,
        )
        assert current_target(root) == GOOD
        assert load_state(root)["last_result"]["result"] == "committed"
        # the switch and the trial were one "updating" screen; committed, it opens for sale
        # without a restart
        n, _ = sup.wait_line(lambda s: s == "out of service: updating", 60)
        sup.wait_line(lambda s: s.startswith("idle:"), 120, start=n + 1)

        # 3. the bad release, sent by the province as a signed command: the good version
        # fetches it over HTTPS, verifies, installs and stages it, and switches when idle
        https = stack.enter_context(
            serve_https(served, world.pki.server_cert_file, world.pki.server_key_file)
        )
        url = f"https://localhost:{https.port}/rel-bad/"
        stack.enter_context(rollout_to_wave_one(province, served / "rel-bad", pub, url, tmp_path))
        t0 = time.monotonic()
        wait_for(
            "the bad version rolled back",
            lambda: (load_state(root)["last_result"] or {}).get("result") == "rolled_back",
            900,
            sup.dump,
        )
        took = time.monotonic() - t0
        state = load_state(root)
        assert state["running"] == GOOD and state["phase"] == "idle", state
        assert current_target(root) == GOOD
        assert "crash loop" in state["last_result"]["reason"], state["last_result"]
        steps = [(h["step"], h["version"]) for h in state["history"]]
        assert steps.count(("trial_boot", BAD)) == 3, steps
        # the good version is back and tells the province
        wait_for(
            "UPDATE_ROLLED_BACK at the province",
            lambda: any(
                e["kind"] == "alarm" and e["body"].get("code") == "UPDATE_ROLLED_BACK"
                for e in province.events(KIOSK_A)
            ),
            300,
            sup.dump,
        )
        reported = [e["body"] for e in province.events(KIOSK_A) if e["kind"] == "update"]
        seen = {(b["step"], b["version"]) for b in reported}
        assert {("committed", GOOD), ("staged", BAD), ("switch", BAD), ("rolled_back", BAD)} <= seen
        assert not any(b["step"] == "refused" for b in reported), reported
        # reported.update: the running version, nothing pending, the last result
        wait_for(
            "reported.update after the rollback",
            lambda: any(
                e["kind"] == "reported"
                and ((e["body"].get("update") or {}).get("last_result") or {}).get("result")
                == "rolled_back"
                for e in province.events(KIOSK_A)
            ),
            300,
            sup.dump,
        )
        last = [e["body"]["update"] for e in province.events(KIOSK_A) if e["kind"] == "reported"]
        assert last[-1]["running"] == GOOD and last[-1]["pending"] is None, last[-1]
        # ... and the rollout it came in stopped after its first wave: nobody else gets it
        wait_for(
            "the rollout aborted", lambda: rollout(province).status == "aborted", 120, sup.dump
        )
        assert dict(rollout(province).sent) == {KIOSK_A: 0}, rollout(province)
        assert rollout(province).failed == {KIOSK_A}
        print(f"bad version rolled back {took:.1f} s after it was applied")
    finally:
        sup.stop()
        stack.close()
    assert sup.proc.returncode == 0, sup.dump()

    # 4. sales after, on the good version's own venv; nothing before was lost
    exe = root / "current" / "bin" / "kiosk"
    assert os.path.realpath(exe).startswith(str(root / "versions" / GOOD))
    version = cli(exe, "--version")
    assert version.stdout.strip() == f"kiosk {GOOD}", version
    buy3(world, exe)
    assert orders(world.data) > before
    ledger = cli(exe, "ledger", "verify", "--config", str(world.config))
    assert ledger.returncode == 0, ledger.stdout + ledger.stderr
    status = cli(exe, "update", "status", "--config", str(world.config))
    assert f"running {GOOD}" in status.stdout, status.stdout
    shutil.rmtree(root / "versions", ignore_errors=True)  # two venvs: free the disk early
    json.dumps(state)  # the state file is plain JSON

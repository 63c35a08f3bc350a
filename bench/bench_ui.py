"""UI costs against the UI issue's goals (SDL dummy video driver, 1080x1920):

- idle CPU on the attract and catalog screens over 30 s: <= 2 % of a core, next to a naive
  60 fps pygame loop measured side by side in the same run;
- frame render time per screen (every screen of `SCREEN_NAMES`, offscreen): p99 <= 8 ms;
- start to first frame (process start to the first display flip, the process ALONE, worst of
  3 starts): <= 1.5 s;
- resident memory (the larger of the attract and catalog processes): <= 120 MB (10^6 bytes);
- tap -> next frame presented, for every screen transition a shopper makes, in a real X window
  (Xvfb, SDL x11 driver): p95 <= 1.5x a bare pygame loop flipping on the same injected event
  in the same run, plus the controller's own work, and < 50 ms (bench/_ui_taps.py).

Every frame-render figure comes with a same-run baseline: a full-screen blit of a prepared
surface onto the same offscreen surface (what any frame costs at least), so a reader can tell
a slower machine from a slower screen.

    python bench/bench_ui.py [--seconds 30] [--rounds 15] [--only taps]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, figure, machine, proc_cpu_s, proc_rss_kib  # noqa: E402

SIZE = (1080, 1920)
CPU_GOAL_PCT = 2.0
FRAME_P99_GOAL_MS = 8.0
FIRST_FRAME_GOAL_MS = 1500.0
RSS_GOAL_MB = 120.0
TAP_ABS_GOAL_MS = 50.0
STARTS = 3


def child_kiosk(screen: str) -> None:
    """The real UI loop (kiosk.ui.app.run) on the fake controller, left alone on `screen`."""
    from dataclasses import replace

    from kiosk import contract as ui
    from kiosk.clock import SystemClock
    from kiosk.config import UiConfig
    from kiosk.sim.fake_controller import FakeController
    from kiosk.ui.app import run

    cfg = replace(
        UiConfig(),
        width=SIZE[0],
        height=SIZE[1],
        fullscreen=False,
        idle_timeout_s=3600,
        dim_after_s=3600,
    )
    clock = SystemClock()
    fc = FakeController(clock)
    fc.start()
    if screen == "catalog":
        fc.post(ui.StartShopping())

    def on_screen(name: str) -> None:
        print(f"FIRST_FRAME {time.monotonic():.6f} {name}", flush=True)

    run(fc, cfg, clock, kiosk_mode=False, on_screen=on_screen)


def child_naive() -> None:
    """A naive pygame kiosk: redraw everything at 60 fps whether or not anything changed."""
    import pygame

    pygame.display.init()
    pygame.font.init()
    surf = pygame.display.set_mode(SIZE)
    font = pygame.font.Font(None, 64)
    clock = pygame.time.Clock()
    print(f"FIRST_FRAME {time.monotonic():.6f} naive", flush=True)
    n = 0
    while True:
        for _ in pygame.event.get():
            pass
        surf.fill((250, 245, 235))
        for i in range(12):
            pygame.draw.rect(surf, (200, 120 + i * 8, 80), (40, 100 + i * 140, 1000, 120), 0, 16)
            surf.blit(font.render(f"product {i} {n % 60}", True, (20, 20, 20)), (80, 130 + i * 140))
        pygame.display.flip()
        clock.tick(60)
        n += 1


def _p(ts: list[float], q: float) -> float:
    ts = sorted(ts)
    return ts[min(len(ts) - 1, round(q * (len(ts) - 1)))]


def blit_samples(reps: int) -> list[float]:
    """ms of full-screen blits of a prepared surface onto an offscreen 1080x1920 surface."""
    import pygame

    dst, src = pygame.Surface(SIZE), pygame.Surface(SIZE)
    src.fill((250, 245, 235))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        dst.blit(src, (0, 0))
        ts.append((time.perf_counter() - t) * 1000)
    return ts


def frame_times(reps: int = 100) -> dict[str, tuple[float, float]]:
    """(p50, p99) full-frame render time in ms per screen, offscreen at 1080x1920. The key
    "baseline" is the same-run baseline: full-screen blits of a prepared surface, measured
    between the screens (so load that slows the screens slows it too)."""
    from kiosk.sim.render import render_app
    from kiosk.ui.app import SCREEN_NAMES

    out = {}
    base: list[float] = []
    for name in SCREEN_NAMES:
        base += blit_samples(reps // 4)
        app = render_app(name, SIZE, "zh")
        ts = []
        for _ in range(reps):
            app.dirty = True
            t = time.perf_counter()
            app.render()
            ts.append((time.perf_counter() - t) * 1000)
        out[name] = (statistics.median(ts), _p(ts, 0.99))
    out["baseline"] = (statistics.median(base), _p(base, 0.99))
    return out


def taps(rounds: int) -> dict[str, Any] | None:
    """Tap -> frame in a child process on its own Xvfb (the x11 driver, a real window)."""
    exe = shutil.which("Xvfb")
    if exe is None:
        print("tap latency: Xvfb is not installed (sudo apt-get install xvfb)")
        return None
    w, h = SIZE
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", f"{w}x{h}x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(write_fd,),
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as r:
            ready, _, _ = select.select([r], [], [], 30)
            n = r.readline().strip() if ready else b""
        if not n.isdigit():
            print("tap latency: Xvfb did not start")
            return None
        env = {
            **os.environ,
            "DISPLAY": f":{int(n)}",
            "SDL_VIDEODRIVER": "x11",
            "SDL_AUDIODRIVER": "dummy",
            "PYTHONPATH": str(ROOT),
            "PYGAME_HIDE_SUPPORT_PROMPT": "1",
        }
        out = subprocess.run(
            [sys.executable, __file__, "--child", "taps", "--rounds", str(rounds)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300 + 60 * rounds,
        )
        for line in out.stdout.splitlines():
            if line.startswith("TAPS "):
                return dict(json.loads(line[5:]))
        print(f"tap latency: no result (exit {out.returncode}): {out.stderr[-1500:]}")
        return None
    finally:
        xvfb.terminate()
        xvfb.wait()


def tap_figures(r: dict[str, Any], cmd: str) -> list[dict[str, Any]]:
    b50, b95, bn = r["baseline"]
    print(
        f"tap -> next frame presented, {r['size'][0]}x{r['size'][1]} window, SDL {r['driver']}"
        f" on Xvfb, ms; baseline (bare pygame loop, same window, same run, n={bn}): "
        f"p50 {b50:.1f} / p95 {b95:.1f}"
    )
    print(f"  {'transition':50} {'p50':>6} {'p95':>6} {'ratio':>6} {'ctrl':>5} {'cold':>6}")
    figs = []
    for name, (p50, p95, n, ctrl) in r["transitions"].items():
        goal = 1.5 * b95 + ctrl
        met = p95 <= goal and p95 < TAP_ABS_GOAL_MS
        flag = "" if met else "   MISSED"
        print(
            f"  {name:50} {p50:6.1f} {p95:6.1f} {p95 / b95:5.2f}x {ctrl:5.1f}"
            f" {r['cold'].get(name, 0):6.0f}{flag}"
        )
        figs.append(
            figure(
                "ui",
                f"tap -> frame p95, {name} (p50 {p50:.1f} ms, n={n}, {p95 / b95:.2f}x baseline)",
                round(p95, 1),
                "ms",
                goal=f"<= 1.5x baseline + controller ({goal:.1f}) and < {TAP_ABS_GOAL_MS:g}",
                met=met,
                baseline=round(b95, 1),
                baseline_name="bare pygame loop flipping on the same event, p95",
                command=cmd,
            )
        )
    print("  (ratio: p95 / baseline p95; ctrl: the fake controller's own p95 work;")
    print("   cold: the first journey after start, not counted)")
    return figs


def frame_figures(cmd: str) -> list[dict[str, Any]]:
    ft = frame_times()
    b50, b99 = ft.pop("baseline")
    print(
        "frame render time (ms, full frame, offscreen 1080x1920, p50 / p99); baseline, same run:"
        f" a full-screen blit of a prepared surface {b50:.2f} / {b99:.2f}"
    )
    for n, (p50, p99) in ft.items():
        flag = "" if p99 <= FRAME_P99_GOAL_MS else "   MISSED"
        print(f"  {n:18}: {p50:6.1f} / {p99:6.1f}  ({p99 / b99:4.1f}x baseline){flag}")
    return [
        figure(
            "ui",
            f"frame render p99, {n} 1080x1920 (p50 {p50:.2f} ms)",
            round(p99, 2),
            "ms",
            goal=f"<= {FRAME_P99_GOAL_MS:g}",
            met=p99 <= FRAME_P99_GOAL_MS,
            baseline=round(b99, 2),
            baseline_name="full-screen blit of a prepared surface, p99",
            command=cmd,
        )
        for n, (p50, p99) in ft.items()
    ]


def process_figures(seconds: float, cmd: str) -> list[dict[str, Any]]:
    """Start to first frame, idle CPU and RSS, in child processes (SDL dummy driver)."""
    env = {
        **os.environ,
        "SDL_VIDEODRIVER": "dummy",
        "SDL_AUDIODRIVER": "dummy",
        "PYTHONPATH": str(ROOT),
        "PYGAME_HIDE_SUPPORT_PROMPT": "1",
    }

    def spawn(name: str) -> tuple[subprocess.Popen[str], float | None]:
        """Start a child; returns it and its start -> first frame in ms."""
        t0 = time.monotonic()
        pr = subprocess.Popen(
            [sys.executable, __file__, "--child", name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = pr.stdout.readline() if pr.stdout else ""
        if not line.startswith("FIRST_FRAME"):
            print(f"{name}: no first frame ({line!r})")
            return pr, None
        return pr, (float(line.split()[1]) - t0) * 1000

    # 1. start to first frame: the attract process alone (nothing else starting), worst of 3
    starts: list[float | None] = []
    for _ in range(STARTS):
        pr, ms = spawn("attract")
        starts.append(ms)
        pr.kill()
        pr.wait()
        time.sleep(0.5)
    # 2. idle CPU and RSS: attract, catalog and the naive loop side by side, same run
    procs = {}
    for name in ("attract", "catalog", "naive"):
        procs[name], _ = spawn(name)
    time.sleep(3.0)  # settle: fonts loaded, first frames drawn, pictures preloaded
    cpu0 = {n: proc_cpu_s(pr.pid) for n, pr in procs.items()}
    w0 = time.monotonic()
    time.sleep(seconds)
    w = time.monotonic() - w0
    cpu = {n: 100 * (proc_cpu_s(pr.pid) - cpu0[n]) / w for n, pr in procs.items()}
    rss = {n: proc_rss_kib(pr.pid) * 1024 / 1e6 for n, pr in procs.items()}
    for pr in procs.values():
        pr.kill()
        pr.wait()
    print(f"idle CPU over {w:.0f} s (% of one core), 1080x1920, SDL dummy driver, same run:")
    for n in ("attract", "catalog", "naive"):
        print(f"  {n:8}: {cpu[n]:6.2f} %   RSS {rss[n]:6.1f} MB")
    fmt = ", ".join("n/a" if v is None else f"{v:.0f}" for v in starts)
    print(f"start -> first frame (attract, alone), ms: {fmt}")
    figs = [
        figure(
            "ui",
            f"idle CPU on {n} ({w:.0f} s)",
            round(cpu[n], 2),
            "% of a core",
            goal=f"<= {CPU_GOAL_PCT:g} % of a core",
            met=cpu[n] <= CPU_GOAL_PCT,
            baseline=round(cpu["naive"], 1),
            baseline_name="naive 60 fps loop, same run",
            command=cmd,
        )
        for n in ("attract", "catalog")
    ]
    worst = None if any(v is None for v in starts) else max(v for v in starts if v is not None)
    figs.append(
        figure(
            "ui",
            f"start to first frame (attract, alone, worst of {STARTS})",
            None if worst is None else round(worst),
            "ms",
            goal=f"<= {FIRST_FRAME_GOAL_MS:g}",
            met=None if worst is None else worst <= FIRST_FRAME_GOAL_MS,
            command=cmd,
        )
    )
    top = max(rss["attract"], rss["catalog"])
    figs.append(
        figure(
            "ui",
            "RSS (larger of attract, catalog)",
            round(top, 1),
            "MB",
            goal=f"<= {RSS_GOAL_MB:g}",
            met=top <= RSS_GOAL_MB,
            baseline=round(rss["naive"], 1),
            baseline_name="naive loop RSS",
            command=cmd,
        )
    )
    return figs


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=30.0, help="idle CPU window")
    p.add_argument(
        "--rounds", type=int, default=12, help="shopper journeys for tap latency (~35 s each)"
    )
    p.add_argument("--only", choices=("process", "frames", "taps"), help="one part only")
    p.add_argument("--child", choices=("attract", "catalog", "naive", "taps"))
    a = p.parse_args()
    if a.child == "naive":
        child_naive()
        return 0
    if a.child == "taps":
        from _ui_taps import run_taps

        print("TAPS " + json.dumps(run_taps(SIZE, a.rounds)), flush=True)
        return 0
    if a.child:
        child_kiosk(a.child)
        return 0
    cmd = "python bench/bench_ui.py" + (f" --only {a.only}" if a.only else "")
    print(f"machine: {machine()}")
    figs: list[dict[str, Any]] = []
    if a.only in (None, "process"):
        figs += process_figures(a.seconds, cmd)
    if a.only in (None, "frames"):
        figs += frame_figures(cmd)
    if a.only in (None, "taps"):
        r = taps(a.rounds)
        if r is not None:
            figs += tap_figures(r, cmd)
    emit(figs)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    sys.exit(main())

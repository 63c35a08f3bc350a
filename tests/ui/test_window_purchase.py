"""A person buys a product with the mouse, in a real X window, against the whole demo world.

`python -m kiosk.cli demo --workdir <tmp>` runs with $DISPLAY on an Xvfb: TLS broker, province
simulator + pay page, board emulator on a pty and `kiosk run` in a 540x960 window. xdotool then
clicks: attract -> a product tile -> add -> cart -> checkout. The click points are not magic
numbers: they are the centres of the tap targets that kiosk.sim.render.render_app records for the
same screen size, language and view (built from the demo data exactly as the controller does).
The test reads the pay URL from the demo's console, POSTs to the pay page like a phone, and
waits until the province database holds the sale record and the emulator's physical log shows
one motor run. The window is saved as window.png (from Xvfb's -fbdir framebuffer) for humans;
the asserts are on state, not pixels.

Xvfb, xdotool and mosquitto must be installed; a missing tool is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kiosk import contract as ui
from kiosk.core import cart as cartlib
from kiosk.core.planogram import SlotKind
from kiosk.sim.broker import find_mosquitto
from kiosk.sim.demo import KIOSK_ID, WINDOW
from kiosk.sim.demo_data import demo_catalog, demo_planogram, demo_stock
from kiosk.sim.render import render_app
from kiosk.ui.app import UiApp

ROOT = Path(__file__).resolve().parents[2]
LANG = "zh"  # the demo's kiosk config: language = "zh"
WMCLASS = "kiosk-buy"
TIMEOUT = 90.0


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: sudo apt-get install {package}")
    return path


# --- where to click: the UI's own tap targets ------------------------------------------------


def _view(mode: ui.Mode, cart: tuple[ui.CartLine, ...] = ()) -> ui.ViewState:
    """The view the controller builds right after `kiosk store seed-demo` (see
    Controller._build_view): every planogram product in id order, units left per product."""
    catalog = demo_catalog()
    pg = demo_planogram(SlotKind.SPIRAL)
    levels = demo_stock(pg)
    products = tuple(
        ui.ProductView(catalog.products[pid], cartlib.available_units(pid, pg, levels, {}))
        for pid in sorted(pg.product_ids())
        if pid in catalog.products
    )
    return ui.ViewState(
        seq=1, mode=mode, products=products, cart=cart, service_phone="400-000-0000"
    )


def _point(app: UiApp, name: str) -> tuple[int, int]:
    """Centre of tap target `name`, checked to be the top-most target there."""
    for hit in app.hits:
        if hit.name == name:
            x, y = hit.rect.center
            top = next(h for h in reversed(app.hits) if h.rect.collidepoint(x, y))
            assert top.name == name, f"{name} at {(x, y)} is covered by {top.name}"
            return x, y
    raise AssertionError(f"no tap target {name!r} on {app.top.name}: {[h.name for h in app.hits]}")


def _product_app(view: ui.ViewState, pid: str) -> UiApp:
    from kiosk.ui.screens.product import ProductScreen

    app = render_app("catalog", WINDOW, LANG, view)
    app.push(ProductScreen(app, pid))
    app.render()
    assert app.top.name == "product"
    return app


def tap_plan() -> tuple[str, list[tuple[str, tuple[int, int]]]]:
    """(product id, [(step, window point)]) for one purchase of the first tile in stock."""
    idle = _view("idle")
    shopping = replace(idle, mode="shopping")
    attract = render_app("attract", WINDOW, LANG, idle)
    catalog = render_app("catalog", WINDOW, LANG, shopping)
    in_stock = {p.product.product_id for p in shopping.products if p.stock_left > 0}
    tiles = [h.name.removeprefix("tile-") for h in catalog.hits if h.name.startswith("tile-")]
    pid = next(p for p in tiles if p in in_stock)
    price = shopping.product(pid).product.price_fen  # type: ignore[union-attr]
    with_cart = replace(shopping, cart=(ui.CartLine(pid, 1, price, price),))
    add = _point(_product_app(shopping, pid), "add")
    assert _point(_product_app(with_cart, pid), "add") == add  # same spot before / after
    go_cart = _point(_product_app(with_cart, pid), "go-cart")
    checkout = _point(render_app("cart", WINDOW, LANG, with_cart), "checkout")
    return pid, [
        ("start", _point(attract, "start")),
        (f"tile-{pid}", _point(catalog, f"tile-{pid}")),
        ("add", add),
        ("go-cart", go_cart),
        ("checkout", checkout),
    ]


def attract_signature(samples: int = 24, step: int = 4) -> list[tuple[int, int, bytes]]:
    """Sample points (x, y, rgb) of the attract screen that stay the same while its card
    drifts and the featured product changes: how the test knows the kiosk is selling (the
    "starting" out-of-service screen looks different) before the first tap."""
    import pygame

    from kiosk.clock import ManualClock
    from kiosk.ui.screens.attract import DRIFT_PERIOD_S

    clock = ManualClock()
    app = render_app("attract", WINDOW, LANG, _view("idle"), clock=clock)
    w, h = WINDOW
    frames = []
    for _ in range(samples):
        clock.advance(DRIFT_PERIOD_S / samples)
        app.render()
        frames.append(pygame.image.tobytes(app.surface, "RGB"))
    out = []
    for y in range(0, h, step):
        for x in range(0, w, step):
            i = 3 * (y * w + x)
            rgb = frames[0][i : i + 3]
            if all(f[i : i + 3] == rgb for f in frames[1:]):
                out.append((x, y, rgb))
    return out


def _match(sig: list[tuple[int, int, bytes]], grab: tuple[int, int, bytes]) -> float:
    """Fraction of the signature's points the window (BGRA) shows in the same colour."""
    w, _h, px = grab
    same = 0
    for x, y, rgb in sig:
        i = 4 * (y * w + x)
        same += px[i + 2] == rgb[0] and px[i + 1] == rgb[1] and px[i] == rgb[2]
    return same / len(sig)


# --- the X server and its framebuffer --------------------------------------------------------


class Screen:
    """Xvfb's -fbdir framebuffer (an XWD file, always current): window pixels without xwd."""

    def __init__(self, fb: Path) -> None:
        self.fb = fb

    def grab(self, rect: tuple[int, int, int, int]) -> tuple[int, int, bytes]:
        data = self.fb.read_bytes()
        hdr = struct.unpack(">25I", data[:100])
        header_size, width, height = hdr[0], hdr[4], hdr[5]
        bpp, bpl, ncolors = hdr[11], hdr[12], hdr[19]
        assert bpp == 32, bpp
        off = header_size + 12 * ncolors
        x, y, w, h = rect
        w, h = min(w, width - x), min(h, height - y)
        rows = [
            data[off + (y + r) * bpl + 4 * x : off + (y + r) * bpl + 4 * (x + w)] for r in range(h)
        ]
        return w, h, b"".join(rows)

    def save_png(self, rect: tuple[int, int, int, int], path: Path) -> None:
        import pygame

        w, h, pixels = self.grab(rect)
        pygame.image.save(pygame.image.frombuffer(pixels, (w, h), "BGRA"), str(path))


@pytest.fixture
def xserver(tmp_path: Path) -> Iterator[tuple[str, Screen]]:
    exe = _need("Xvfb", "xvfb")
    fbdir = tmp_path / "fb"
    fbdir.mkdir()
    n = next(
        (
            n
            for n in range(190, 290)
            if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists()
        ),
        None,
    )
    if n is None:
        pytest.fail("no free X display number in :190-:289")
    proc = subprocess.Popen(
        [exe, f":{n}", "-screen", "0", "720x1000x24", "-fbdir", str(fbdir), "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists() or not (fbdir / "Xvfb_screen0").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Xvfb :{n} did not start")
        time.sleep(0.05)
    try:
        yield f":{n}", Screen(fbdir / "Xvfb_screen0")
    finally:
        proc.terminate()
        proc.wait(timeout=5)


# --- the demo process --------------------------------------------------------------------------


class Console:
    """The demo's console lines, collected by a thread; wait for a regex."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.lines: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()

    def wait(self, pattern: str, deadline: float) -> re.Match[str]:
        rx = re.compile(pattern)
        with self._cv:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"demo never printed /{pattern}/:\n" + "\n".join(self.lines))
                self._cv.wait(min(left, 0.5))


def _until(pred: Callable[[], Any], deadline: float, what: str, poll: float = 0.1) -> Any:
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(poll)


def _sale_records(province_db: Path, order_id: str) -> list[str]:
    """Bodies of the province's sale records of this order (read-only)."""
    if not province_db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{province_db}?mode=ro", uri=True, timeout=1.0)
        try:
            rows = conn.execute(
                "SELECT body FROM events WHERE kiosk_id = ? AND kind = 'sale'", (KIOSK_ID,)
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []
    return [body for (body,) in rows if order_id in body]


def _motor_runs(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue  # a line being written
        if e.get("event") == "motor_run":
            out.append(e)
    return out


def test_buy_with_the_mouse_in_a_window(tmp_path: Path, xserver: tuple[str, Screen]) -> None:
    find_mosquitto()  # fails with instructions when missing
    xdotool = _need("xdotool", "xdotool")
    display, screen = xserver
    pid, plan = tap_plan()
    t0 = time.monotonic()
    deadline = t0 + TIMEOUT
    work = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_CRASH")}
    env.update(
        DISPLAY=display,
        SDL_VIDEODRIVER="x11",  # tests/ui/conftest.py sets "dummy" for in-process tests
        SDL_AUDIODRIVER="dummy",
        SDL_VIDEO_X11_WMCLASS=WMCLASS,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    demo = subprocess.Popen(
        [sys.executable, "-m", "kiosk.cli", "demo", "--workdir", str(work)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    console = Console(demo.stdout)
    shot = tmp_path / "window.png"
    rect = (0, 0, *WINDOW)
    stage = "start"
    try:
        console.wait(r"kiosk running \(in a window", deadline)

        def find_window() -> str:
            found = subprocess.run(
                [xdotool, "search", "--class", f"^{WMCLASS}$"],
                env=env,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.split()
            return found[0] if found else ""

        wid = _until(find_window, deadline, f"a window of class {WMCLASS}", poll=0.2)
        geo = subprocess.run(
            [xdotool, "getwindowgeometry", "--shell", wid],
            env=env,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        g = dict(line.split("=", 1) for line in geo.split())
        rect = (int(g["X"]), int(g["Y"]), int(g["WIDTH"]), int(g["HEIGHT"]))
        assert rect[2:] == WINDOW, (rect, WINDOW)
        # The kiosk sells only once its board is online (before that: "starting" screen).
        kiosk_log = work / "kiosk.log"
        _until(
            lambda: (
                kiosk_log.exists() and "board.online" in kiosk_log.read_text("utf-8", "replace")
            ),
            deadline,
            "the kiosk's board to come online",
        )
        sig = attract_signature()
        assert len(sig) > 1000, len(sig)
        _until(
            lambda: _match(sig, screen.grab(rect)) > 0.9,
            deadline,
            "the attract screen (the kiosk selling) in the window",
        )
        time.sleep(0.2)  # settle

        for stage, (x, y) in plan:
            before = screen.grab(rect)
            subprocess.run(
                [xdotool, "mousemove", "--window", wid, str(x), str(y), "click", "1"],
                env=env,
                check=True,
                timeout=10,
            )
            # the window redraws after every one of these taps (new screen or new cart count)
            _until(
                lambda before=before: screen.grab(rect) != before,  # type: ignore[misc]
                min(deadline, time.monotonic() + 10),
                f"the window to change after tapping {stage}",
                poll=0.05,
            )
            time.sleep(0.3)  # settle: the controller's view round trip

        stage = "pay"
        m = console.wait(r"\[kiosk\] order (\S+) ¥[\d.]+: pay at (http\S+)", deadline)
        order_id, url = m.group(1), m.group(2)
        u = urllib.parse.urlsplit(url)
        form = dict(urllib.parse.parse_qsl(u.query))
        form["method"] = "wechat"
        req = urllib.request.Request(
            urllib.parse.urlunsplit((u.scheme, u.netloc, "/pay", "", "")),
            data=urllib.parse.urlencode(form).encode(),
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # a phone pressing "WeChat Pay"
            assert resp.status == 200
            assert "offline-code" in resp.read().decode("utf-8")

        stage = "dispense"
        console.wait(rf"\[kiosk\] order {re.escape(order_id)}: completed", deadline)
        (sale_body,) = _until(
            lambda: _sale_records(work / "province" / "province.db", order_id),
            deadline,
            "the province to store the sale record",
        )
        assert pid in sale_body, sale_body  # the product that was tapped
        runs = _motor_runs(work / "board-physical.jsonl")
        assert len(runs) == 1, runs
        assert runs[0].get("result") == "DELIVERED", runs
        stage = "done"
        time.sleep(0.3)  # settle: the done screen
    finally:
        try:
            screen.save_png(rect, shot)
        except Exception as e:  # the screenshot is for humans; never hide the real failure
            print(f"screenshot failed: {e}")
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)  # the demo stops its children, broker, pty
        try:
            demo.wait(timeout=20)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait(timeout=5)
        print("\n".join(console.lines))
        for name in ("kiosk.log", "emulator.log"):
            f = work / name
            if stage != "done" and f.exists():
                tail = f.read_text("utf-8", "replace").splitlines()[-40:]
                print(f"--- {name} (last lines)\n" + "\n".join(tail))
        print(f"stage {stage}; {time.monotonic() - t0:.1f} s; screenshot {shot}")
    assert stage == "done"
    assert "Traceback" not in (work / "kiosk.log").read_text("utf-8", "replace")
    assert not (work / "board").exists()  # pty symlink removed: everything stopped

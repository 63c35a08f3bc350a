"""Store contents the tests share: the seeded demo store and sample orders."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kiosk.core.payment import make_order_id
from kiosk.core.planogram import Planogram, SlotKind
from kiosk.core.sale import Line, LineStatus, Order, SaleRules, State
from kiosk.core.stock import StockChange, StockReason
from kiosk.sim.demo_data import demo_catalog, demo_planogram, demo_stock
from kiosk.store import open_store

SAMPLE_KIOSK = "AH-341524-0007"


def seed_store(
    data_dir: Path, kind: SlotKind = SlotKind.SPIRAL, below: int | None = None
) -> dict[int, int]:
    """The demo catalog, planogram (``kind``; only the slots numbered below ``below`` when
    given) and stock in a store at ``data_dir``; returns the stock levels by slot."""
    s = open_store(data_dir)
    try:
        s.catalog.replace(demo_catalog())
        pg = demo_planogram(kind)
        if below is not None:
            pg = Planogram.of(pg.version, [slot for slot in pg if slot.slot_no < below])
        s.planogram.replace(pg)
        for n, lv in demo_stock(pg).items():
            if lv:
                s.stock.apply(StockChange(n, lv, StockReason.RESTOCK, "seed"))
        return s.stock.levels()
    finally:
        s.close()


def sample_line(n: int, **kw: object) -> Line:
    base = Line(
        product_id=f"P{n}",
        name_zh=f"产品{n}",
        name_en=f"Product {n}",
        certification_no=f"FP-{n}",
        origin_county_zh="金寨县",
        origin_county_en="Jinzhai",
        origin_area_code="341524",
        price_fen=1000 + n,
        slot_no=10 + n,
        slot_kind=SlotKind.SPIRAL,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def sample_order(seq: int = 1) -> Order:
    """A two-line order awaiting payment (kiosk SAMPLE_KIOSK)."""
    return Order(
        order_id=make_order_id(SAMPLE_KIOSK, seq),
        kiosk_id=SAMPLE_KIOSK,
        order_seq=seq,
        lines=(sample_line(1), sample_line(2, status=LineStatus.PENDING)),
        rules=SaleRules(payment_window_s=90.0, max_extensions=3),
        state=State.AWAITING_PAYMENT,
        created_at=1_790_000_000.25,
        expires_at=1_790_000_090.25,
    )

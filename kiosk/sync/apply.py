"""What an accepted province message does to the kiosk: message application, apart from routing.

Owns: writing a desired catalog / price list / planogram / config into the store, carrying out
a province command, and reading an order-status reply off the wire. Decides nothing about
trust: `kiosk.sync.bridge` routes each message and has `TrustPolicy` check it first (signature,
version, expiry, nonce); the `apply_*` functions are the `apply` callbacks the policy runs
inside its transaction (nested writes are savepoints), so the store change and the version
bump commit together or not at all. A malformed body raises `TrustError(MALFORMED)`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kiosk import contract as ui
from kiosk import exitcodes
from kiosk.config import board_addresses, planogram_board_issues
from kiosk.core.catalog import Catalog, Category, Product
from kiosk.core.payment import (
    PaymentConfirmation,
    PaymentStatus,
    PaymentStatusReply,
    confirmation_from_dict,
)
from kiosk.core.planogram import planogram_from_csv
from kiosk.log import log_event
from kiosk.store import Store
from kiosk.sync.media import sha_of_ref
from kiosk.sync.outbox import Priority
from kiosk.sync.port import KioskPort
from kiosk.sync.signing import TrustError, TrustReason

__all__ = [
    "EXIT_RESTART",
    "LOG_TAIL_MAX_BYTES",
    "Commands",
    "apply_catalog",
    "apply_config",
    "apply_planogram",
    "apply_prices",
    "status_reply_from_wire",
]

log = logging.getLogger("kiosk.sync.apply")

EXIT_RESTART = exitcodes.RESTART  # `restart_app`; kept under this name for callers
LOG_TAIL_MAX_BYTES = 48_000  # an event must stay below the 64 KiB message limit
_META = ("name", "version", "kiosk_id", "issued_at")

Append = Callable[[str, Mapping[str, Any], Priority], None]


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


# --- desired state ------------------------------------------------------------------------------


def apply_catalog(store: Store, body: dict[str, Any]) -> None:
    products = body.get("products")
    if not isinstance(products, list):
        raise TrustError(TrustReason.MALFORMED, "catalog: products must be a list")
    items = []
    for p in products:
        if not isinstance(p, dict):
            raise TrustError(TrustReason.MALFORMED, "catalog: a product is not an object")
        items.append(
            Product(
                **{
                    **p,
                    "category": Category(str(p.get("category"))),
                    "image_ref": _network_image_ref(p),
                }
            )
        )
    catalog = Catalog.of(int(body["version"]), items)
    store.catalog.replace(_with_prices(store, catalog))


def _network_image_ref(p: Mapping[str, Any]) -> str:
    """A catalog from the network names pictures by sha256 only (kiosk.sync.media): anything
    else (a file name, a path such as "../../etc/passwd") is refused, logged, and the product
    gets its drawn placeholder (""). Only a locally seeded catalog (`kiosk store seed-demo`)
    may name files in `<data_dir>/images`."""
    ref = p.get("image_ref", "")
    if ref == "" or ref is None:
        return ""
    sha = sha_of_ref(ref) if isinstance(ref, str) else None
    if sha is None:
        log_event(
            log,
            "catalog.image_ref_refused",
            logging.WARNING,
            product_id=str(p.get("product_id", ""))[:64],
            image_ref=str(ref)[:80],
            reason="image refs from the network must be a sha256 (64 hex); placeholder shown",
        )
        return ""
    return sha


def _with_prices(store: Store, catalog: Catalog) -> Catalog:
    """A catalog with the kiosk's own price list (desired/prices) laid over it."""
    prices = store.settings.get_json("sync.prices", {})
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


def apply_prices(store: Store, body: dict[str, Any]) -> None:
    prices = body.get("prices")
    if not isinstance(prices, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in prices.values()
    ):
        raise TrustError(TrustReason.MALFORMED, "prices: {product_id: fen > 0}")
    store.settings.set_json("sync.prices", prices)
    store.catalog.replace(_with_prices(store, store.catalog.load()))


def apply_planogram(kiosk: KioskPort, body: dict[str, Any]) -> None:
    text = body.get("csv")
    if not isinstance(text, str):
        raise TrustError(TrustReason.MALFORMED, "planogram: csv must be a string")
    store = kiosk.store
    pg = planogram_from_csv(text, int(body["version"]), store.catalog.load().products)
    boards = set(board_addresses(kiosk.config))  # with [[board]]: exactly the tables' boards
    if not kiosk.config.boards:
        boards |= {s.board for s in store.planogram.load()}
    missing = {s.board for s in pg} - boards
    if missing:
        raise TrustError(TrustReason.MALFORMED, f"planogram: unknown boards {sorted(missing)}")
    misfit = planogram_board_issues(kiosk.config, pg)  # a locker door on a VMC, ...
    if misfit:
        raise TrustError(TrustReason.MALFORMED, f"planogram: {misfit[0].key} {misfit[0].problem}")
    store.planogram.replace(pg)
    # the cabinet routes slot numbers to (board, address): follow the new layout
    try:
        kiosk.board.set_slot_map({s.slot_no: (s.board, s.address) for s in pg})
    except ValueError as e:
        raise TrustError(TrustReason.MALFORMED, f"planogram: {e}") from e


def apply_config(store: Store, body: dict[str, Any]) -> None:
    content = {k: v for k, v in body.items() if k not in _META}
    for k, v in content.items():
        store.settings.set(f"config.{k}", json.dumps(v, ensure_ascii=False))


# --- commands -----------------------------------------------------------------------------------


class Commands:
    """Carries out an accepted command (`lock_sales`, `unlock_sales`, `resync`, `restart_app`,
        `upload_logs`, `open_door`, `install_release`: fetch, verify, install and stage a release in
    the background; kiosk/update). `report` appends the reported state, `append` an uplink record,
        `log_lines` gives the last lines logged (for `upload_logs`)."""

    def __init__(
        self,
        kiosk: KioskPort,
        *,
        report: Callable[[], None],
        append: Append,
        log_lines: Callable[[], list[str]],
    ) -> None:
        self.kiosk = kiosk
        self.report = report
        self.append = append
        self.log_lines = log_lines

    def run(self, body: Mapping[str, Any]) -> None:
        """Raises TrustError(MALFORMED) for an unknown command or bad arguments."""
        command = str(body["command"])
        raw = body.get("args")
        args: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        c = self.kiosk.controller
        log_event(log, "sync.command", command=command)
        if command in ("lock_sales", "unlock_sales"):
            c.post(ui.LockSales(command == "lock_sales"))
        elif command == "resync":
            self.kiosk.outbox.reset_sent()
            self.report()
        elif command == "restart_app":
            self.kiosk.request_exit(EXIT_RESTART)
        elif command == "upload_logs":
            self._upload_logs(int(args.get("lines", 200)))
        elif command == "install_release":
            url = args.get("url")
            if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                raise TrustError(TrustReason.MALFORMED, "install_release needs args.url (https)")
            self.kiosk.install_release(url)
        elif command == "open_door":
            slot = args.get("slot")
            if not isinstance(slot, int) or isinstance(slot, bool):
                raise TrustError(TrustReason.MALFORMED, "open_door needs args.slot (int)")
            c.post(ui.OpenDoor(slot))
        else:
            raise TrustError(TrustReason.MALFORMED, "unknown command")

    def _upload_logs(self, n: int) -> None:
        lines = self.log_lines()[-max(1, min(n, 500)) :]
        while lines and len(json.dumps(lines, ensure_ascii=False).encode()) > LOG_TAIL_MAX_BYTES:
            lines = lines[len(lines) // 4 + 1 :]
        self.append(
            "technician",
            {"action": "upload_logs", "lines": lines, "at": self.kiosk.clock.time()},
            Priority.HIGH,
        )

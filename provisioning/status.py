"""`kiosk-provision status`: one screen with what a technician checks on a visit.

Owns: the sections (identity, registration, certificate expiry, broker connection, queue depth,
board, stock, last sale, software) and reading them from the config, the identity files, the
store and a quick board IDENTIFY. Read-only: never changes the store, the config or the board;
every part that cannot be read says so ("offline", "not registered") instead of failing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from kiosk import __version__, exitcodes
from kiosk.config import KioskConfig
from kiosk.textfile import say_store_error
from provisioning.files import command_config
from provisioning.keys import IdentityFiles
from provisioning.register import cert_days_left

__all__ = ["add_parser", "cmd_status", "gather"]


def _registration(cfg: KioskConfig, files: IdentityFiles) -> dict[str, Any]:
    cert = cfg.sync.cert_file or files.cert
    out: dict[str, Any] = {
        "device_key": "present" if (cfg.sync.key_file or files.key).exists() else "missing",
        "certificate": str(cert) if cert.exists() else "none (not registered)",
        "payment_secret": "present"
        if cfg.payments.device_secret_file and cfg.payments.device_secret_file.exists()
        else "missing",
        "mutual_tls": bool(cfg.sync.cert_file),
    }
    days = cert_days_left(cert) if cert.exists() else None
    if days is not None:
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
        out["cert_expires"] = f"{until:%Y-%m-%d} ({days:.0f} days)" + (
            "  RENEW: kiosk-provision register --renew" if days < 30 else ""
        )
    return out


def _store_parts(cfg: KioskConfig) -> dict[str, Any]:
    from kiosk.store import open_store

    parts: dict[str, Any] = {}
    if not (cfg.store.data_dir / "kiosk.db").exists():
        return {"store": f"no store yet in {cfg.store.data_dir}"}
    try:
        store = open_store(cfg.store.data_dir)
    except Exception as e:  # a corrupt store: one line in the user's words, what to do
        return {"store": say_store_error(e)}
    try:
        try:
            from kiosk.clock import SystemClock
            from kiosk.sync.outbox import Outbox
            from kiosk.sync.topics import Topics

            ob = Outbox(store, Topics(cfg.identity.kiosk_id), SystemClock())
            depth = ob.depth()
            last_ack = ob.last_ack_at()
            parts["queue"] = {
                "waiting": sum(depth.values()),
                "by_priority": {p.name.lower(): n for p, n in depth.items()},
                "last_ack": _when(last_ack),
            }
        except Exception as e:
            parts["queue"] = f"unavailable: {e}"
        levels = store.stock.levels()
        with store.read() as conn:
            caps = dict(conn.execute("SELECT slot_no, capacity FROM planogram_slot").fetchall())
            row = conn.execute(
                "SELECT at, slot_no FROM stock_log WHERE reason = 'sale' ORDER BY id DESC LIMIT 1"
            ).fetchone()
        empty = sorted(s for s, n in levels.items() if n == 0)
        parts["stock"] = {
            "slots": len(caps),
            "units": sum(levels.values()),
            "capacity": sum(caps.values()),
            "empty_slots": empty[:30],
        }
        parts["last_sale"] = _when(row[0]) + f" (slot {row[1]})" if row else "none recorded"
    except Exception as e:
        parts.setdefault("stock", f"unavailable: {e}")
    finally:
        store.close()
    return parts


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _board(cfg: KioskConfig, port: str, timeout: float) -> str:
    """Each board of the kiosk's cabinet as `kiosk run` builds it (kiosk.app.build_cabinet:
    our board, a VMC, Modbus lock boards, or a mix under [[board]]), `port` in place of
    `[hardware] port`."""
    import dataclasses

    from kiosk.app import build_cabinet
    from kiosk.hardware.board import BoardError
    from kiosk.hardware.cli_target import load_planogram, ports_of, protocol_of, wait_links
    from kiosk.hardware.link import LinkTiming

    conf = dataclasses.replace(cfg, hardware=dataclasses.replace(cfg.hardware, port=port))
    where = port if not (cfg.boards or cfg.modbus.locks) else ports_of(cfg)
    try:
        store, planogram = load_planogram(cfg)
        if store is not None:
            store.close()
        timing = LinkTiming(contact_window=max(LinkTiming().contact_window, timeout))
        link, cabinet = build_cabinet(conf, planogram, timing=timing)
    except Exception as e:
        return f"offline ({e})"
    link.start()
    try:
        error = wait_links(link, timeout)
        if error is not None:
            return f"offline ({error}) at {where}"
        parts = []
        for addr, board in sorted(cabinet.boards.items()):
            info = board.identify()
            parts.append(
                f"board {addr} ({protocol_of(board)}): {info.model} serial {info.serial} "
                f"firmware {info.firmware_version}, {info.slot_count} slots"
            )
        return f"online at {where}: " + "; ".join(parts)
    except BoardError as e:
        return f"offline ({e})"
    finally:
        link.close()


def _broker(cfg: KioskConfig, timeout: float) -> str:
    from provisioning.selftest import check_broker

    c = check_broker(cfg, timeout=timeout)
    return ("reachable: " if c.status == "ok" else "NOT reachable: ") + c.detail


def gather(
    cfg: KioskConfig, files: IdentityFiles, *, port: str, timeout: float, offline: bool = False
) -> dict[str, Any]:
    ident = cfg.identity
    data: dict[str, Any] = {
        "identity": {
            "kiosk_id": ident.kiosk_id,
            "site": f"{ident.site_name} ({ident.site_type.value})",
            "area_code": ident.area_code,
            "address": ident.address,
        },
        "registration": _registration(cfg, files),
        "broker": {
            "url": cfg.sync.broker_url,
            "connection": "not checked" if offline else _broker(cfg, timeout),
        },
        "board": "not checked" if offline else _board(cfg, port, timeout),
    }
    parts = _store_parts(cfg)
    data["queue"] = parts.get("queue", parts.get("store", "unavailable"))
    data["stock"] = parts.get("stock", parts.get("store", "unavailable"))
    data["last_sale"] = parts.get("last_sale", "unknown")
    data["software"] = {"kiosk": __version__, "config": str(cfg.source)}
    return data


def render(data: dict[str, Any]) -> str:
    lines: list[str] = []
    titles = {
        "identity": "IDENTITY 身份",
        "registration": "REGISTRATION 注册",
        "broker": "BROKER 省平台连接",
        "queue": "QUEUE 待上传",
        "board": "BOARD 控制板",
        "stock": "STOCK 库存",
        "last_sale": "LAST SALE 最近销售",
        "software": "SOFTWARE 软件",
    }
    for key, title in titles.items():
        value = data.get(key)
        lines.append(f"== {title}")
        if isinstance(value, dict):
            for k, v in value.items():
                shown = json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                lines.append(f"   {k:<15} {shown}")
        else:
            lines.append(f"   {value}")
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="one screen: identity, registration, broker, queue, board, stock, last sale, version",
    )
    p.add_argument("--config", metavar="PATH")
    p.add_argument("--dir", metavar="DIR", help="identity files (default: the config's directory)")
    p.add_argument("--port", metavar="URL", help="board port (default: hardware.port)")
    p.add_argument(
        "--timeout",
        type=float,
        default=1.5,
        metavar="S",
        help="board and broker checks (default 1.5 s)",
    )
    p.add_argument("--offline", action="store_true", help="skip the board and broker checks")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    loaded = command_config(args.config)
    if loaded is None:
        return exitcodes.USAGE
    path, cfg = loaded
    files = IdentityFiles(Path(args.dir) if args.dir else path.parent)
    data = gather(
        cfg, files, port=args.port or cfg.hardware.port, timeout=args.timeout, offline=args.offline
    )
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else render(data))
    return exitcodes.OK

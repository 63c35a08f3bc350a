"""Read-only service panels: sync status (queue depth by priority, last connection, last
end-to-end ack), boards and link counters, network, software version.

Owns: nothing; every value comes from `ServiceInfo`. Opening a panel posts `ServiceViewed`.
"""

from __future__ import annotations

import time

import pygame

from kiosk.contract import ServiceInfo, ServiceViewed
from kiosk.ui.screens.base import AppApi, Screen, header, kv_rows, link_strip
from kiosk.ui.widgets import Ui

_TITLES = {
    "sync": "service.sync",
    "board": "service.board",
    "network": "service.network",
    "version": "service.version",
}
_PRIOS = ("critical", "high", "normal", "low")
#: link counters that mean trouble, shown before the traffic counters
_TROUBLE = (
    "crc_errors",
    "timeouts",
    "retransmits",
    "disconnects",
    "reconnects",
    "protocol_violations",
    "naks_received",
    "late_responses",
)


class ServiceInfoScreen(Screen):
    name = "service_info"
    service = True
    idle_policy = "service"

    def __init__(self, app: AppApi, panel: str) -> None:
        super().__init__(app)
        assert panel in _TITLES, panel
        self.panel = panel
        app.post(ServiceViewed(panel))

    def _when(self, ui: Ui, epoch: float | None) -> str:
        if epoch is None:
            return ui.t("service.never")
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))

    def rows(self, ui: Ui, info: ServiceInfo) -> list[tuple[str, str]]:
        t = ui.t
        if self.panel == "sync":
            rows = [
                (t("service.queue", prio=t(f"service.prio.{p}")), str(info.queue_depths.get(p, 0)))
                for p in _PRIOS
            ]
            rows += [
                (t("service.last_conn"), self._when(ui, info.last_connection)),
                (t("service.last_ack"), self._when(ui, info.last_ack)),
            ]
            return rows
        if self.panel == "board":
            rows = []
            for b in info.boards:
                state = t("service.connected") if b.connected else t("service.disconnected")
                rows.append((t("service.board_n", addr=b.address), state))
                if b.firmware:
                    rows.append((t("service.firmware"), b.firmware))
                # trouble first: a small screen shows what it can from the top
                keys = sorted(
                    b.counters,
                    key=lambda k: (k not in _TROUBLE, _TROUBLE.index(k) if k in _TROUBLE else 0),
                )
                rows += [
                    (t(f"counter.{k}") if t.has(f"counter.{k}") else k, str(b.counters[k]))
                    for k in keys
                ]
            return rows
        if self.panel == "network":
            n = info.network
            return [
                (t("service.network"), t("service.online") if n.online else t("service.offline")),
                (t("service.iface"), n.interface or "-"),
                (t("service.ip"), n.address or "-"),
                (t("service.broker"), n.broker or "-"),
            ]
        return [
            (t("service.kiosk_id"), info.kiosk_id or "-"),
            (t("service.sw"), info.version or "-"),
            *(
                (t("service.update_history") if i == 0 else "", line)
                for i, line in enumerate(info.update_history)
            ),
        ]

    def draw(self, ui: Ui) -> None:
        m = ui.m
        ui.surface.fill(ui.c.bg)
        area = header(ui, self.app, ui.t(_TITLES[self.panel]), back=lambda: self.app.pop(self))
        body = area.inflate(-2 * m.pad, -2 * m.pad)
        if self.panel != "version":
            y = link_strip(ui, self.app, pygame.Rect(body.x, body.y, body.w, 0)) + m.gap
            body = pygame.Rect(body.x, y, body.w, body.bottom - y)
        # a value wraps (a URL at / and .) rather than be cut
        kv_rows(ui, body, self.rows(ui, self.app.view.service), label_frac=0.45, max_value_lines=3)

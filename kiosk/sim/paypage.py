"""The simulated payment page: what the shopper's phone opens from the kiosk's QR code.

Owns: a tiny HTTP server on 127.0.0.1 (http.server, one thread per request). `GET /pay?o=&a=&e=&s=`
checks the pay URL exactly as the province would (kiosk.core.payment.parse_pay_url with the
kiosk's device secret) and shows the order, the amount and two buttons; `POST /pay` with a
method simulates WeChat Pay / Alipay success: it calls `on_paid(params, method)` (the province
simulator signs and publishes the confirmation) and shows the offline confirmation code for a
kiosk that has lost its connection, made with the secret that signed the URL
(kiosk.sim.province_secrets.verify_pay_url: a renewed kiosk's previous secret counts for orders
shown before the rotation; a revoked kiosk has none). Must never confirm an URL whose signature
does not check or whose payment window has passed, and never show an offline code for such an
URL.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from kiosk.clock import Clock, SystemClock
from kiosk.core.payment import PaymentMethod, PayUrlParams, offline_code
from kiosk.log import log_event
from kiosk.sim.province_secrets import verify_pay_url

__all__ = ["DEFAULT_PORT", "PayPageServer"]

log = logging.getLogger("kiosk.sim.paypage")

DEFAULT_PORT = 8780  # kiosk/data/demo.toml: pay_url_base = "http://127.0.0.1:8780/pay"
_METHODS = {
    PaymentMethod.WECHAT.value: ("微信支付", "WeChat Pay", "#07c160"),
    PaymentMethod.ALIPAY.value: ("支付宝", "Alipay", "#1677ff"),
}
_MAX_BODY = 4096

OnPaid = Callable[[PayUrlParams, str], Any]

_CSS = """
body{font-family:"Noto Sans CJK SC","WenQuanYi Micro Hei","PingFang SC",sans-serif;
margin:0;background:#f4f5f7;color:#1d2129}
main{max-width:420px;margin:0 auto;padding:24px}
.card{background:#fff;border-radius:12px;padding:24px;box-shadow:0 1px 4px rgba(0,0,0,.08)}
h1{font-size:20px;margin:0 0 4px}
.sub{color:#86909c;font-size:13px;margin-bottom:20px}
.amount{font-size:40px;font-weight:600;margin:12px 0}
dl{display:grid;grid-template-columns:auto 1fr;gap:6px 12px;font-size:14px;margin:16px 0}
dt{color:#86909c}dd{margin:0;word-break:break-all}
button{display:block;width:100%;border:0;border-radius:8px;color:#fff;font-size:18px;
padding:14px;margin-top:12px;cursor:pointer}
.code{font:600 34px/1.2 monospace;letter-spacing:4px;text-align:center;background:#f2f3f5;
border-radius:8px;padding:12px;margin:12px 0}
.ok{color:#00b42a}.bad{color:#f53f3f}
.note{font-size:13px;color:#4e5969}
"""


def _yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def _page(title_zh: str, title_en: str, body: str) -> bytes:
    doc = (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title_zh)} · {html.escape(title_en)}</title>"
        f"<style>{_CSS}</style></head><body><main><div class='card'>"
        f"<h1>{html.escape(title_zh)}</h1><div class='sub'>{html.escape(title_en)}</div>"
        f"{body}</div><p class='note'>模拟支付页面,仅供演示与测试。"
        "Simulated payment page for demos and tests.</p></main></body></html>"
    )
    return doc.encode("utf-8")


class PayPageServer:
    """`start()` serves in a background thread; `url` is the base the kiosk config should use
    (`payments.pay_url_base`)."""

    def __init__(
        self,
        device_secrets: Mapping[str, bytes],
        on_paid: OnPaid,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        clock: Clock | None = None,
    ) -> None:
        self.device_secrets = device_secrets
        self.on_paid = on_paid
        self.clock: Clock = clock or SystemClock()
        server = self
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(server))
        self._httpd.daemon_threads = True
        addr = self._httpd.server_address
        self.host, self.port = str(addr[0]), int(addr[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/pay"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="paypage", daemon=True
        )
        self._thread.start()
        log_event(log, "paypage.listening", url=self.url)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # --- pages (pure functions of the request; the handler only does HTTP) ---------------

    def check(self, query: str) -> tuple[PayUrlParams | None, str]:
        """The verified pay-URL parameters, or None and why (Chinese / English)."""
        params, _, why = self._verified(query)
        return params, why

    def _verified(self, query: str) -> tuple[PayUrlParams | None, bytes, str]:
        """As `check`, with the device secret that signed the URL."""
        found = verify_pay_url(f"{self.url}?{query}", self.device_secrets)
        if found is None:
            return None, b"", "支付链接无效 · This payment link is not valid."
        params, secret = found
        if params.expires_at < self.clock.time():
            return None, b"", "支付已超时,请在售货机上重新下单 · The payment window has closed."
        return params, secret, ""

    def pay_page(self, query: str) -> tuple[int, bytes]:
        params, why = self.check(query)
        if params is None:
            return HTTPStatus.BAD_REQUEST, _page(
                "无法支付", "Cannot pay", f"<p class='bad'>{html.escape(why)}</p>"
            )
        hidden = "".join(
            f"<input type='hidden' name='{k}' value='{html.escape(v, quote=True)}'>"
            for k, v in parse_qsl(query)
            if k in ("o", "a", "e", "s")
        )
        buttons = "".join(
            f"<form method='post' action='/pay'>{hidden}"
            f"<input type='hidden' name='method' value='{m}'>"
            f"<button style='background:{color}' name='pay'>{zh} {en}</button></form>"
            for m, (zh, en, color) in _METHODS.items()
        )
        body = (
            f"<div class='amount'>{_yuan(params.amount_fen)}</div>"
            "<dl>"
            f"<dt>订单 Order</dt><dd>{html.escape(params.order_id)}</dd>"
            f"<dt>售货机 Kiosk</dt><dd>{html.escape(params.kiosk_id)}</dd>"
            "</dl>"
            f"{buttons}"
        )
        return HTTPStatus.OK, _page("确认付款", "Confirm payment", body)

    def pay(self, form: Mapping[str, str]) -> tuple[int, bytes]:
        method = form.get("method", "")
        if method not in _METHODS:
            return HTTPStatus.BAD_REQUEST, _page(
                "无法支付", "Cannot pay", "<p class='bad'>未知支付方式 · Unknown method.</p>"
            )
        query = urlencode({k: form.get(k, "") for k in ("o", "a", "e", "s")})
        params, secret, why = self._verified(query)
        if params is None:
            return HTTPStatus.BAD_REQUEST, _page(
                "无法支付", "Cannot pay", f"<p class='bad'>{html.escape(why)}</p>"
            )
        try:
            self.on_paid(params, method)
        except Exception as e:
            log.exception("paypage: confirming the payment failed")
            return HTTPStatus.INTERNAL_SERVER_ERROR, _page(
                "支付失败", "Payment failed", f"<p class='bad'>{html.escape(str(e))}</p>"
            )
        code = offline_code(secret, params.order_id, params.amount_fen)
        zh, en, _ = _METHODS[method]
        body = (
            f"<p class='ok'>✔ {zh}成功 · {en} payment successful</p>"
            f"<div class='amount'>{_yuan(params.amount_fen)}</div>"
            f"<dl><dt>订单 Order</dt><dd>{html.escape(params.order_id)}</dd></dl>"
            "<p class='note'>售货机会自动出货。如果售货机显示“网络断开”,请在售货机上输入下面的"
            "确认码:<br>The kiosk dispenses by itself. If it shows it is offline, type this "
            "confirmation code on the kiosk:</p>"
            f"<div class='code' id='offline-code'>{code[:4]} {code[4:]}</div>"
        )
        return HTTPStatus.OK, _page("支付成功", "Payment successful", body)


def _make_handler(server: PayPageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "kiosk-paypage/1"

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            u = urlsplit(self.path)
            if u.path == "/pay":
                self._send(*server.pay_page(u.query))
            elif u.path == "/":
                self._send(
                    HTTPStatus.OK,
                    _page(
                        "模拟支付",
                        "Payment simulator",
                        "<p class='note'>扫描售货机上的二维码打开付款页面。"
                        "Scan the QR code on the kiosk to open a payment page.</p>",
                    ),
                )
            else:
                self._send(HTTPStatus.NOT_FOUND, _page("未找到", "Not found", ""))

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/pay":
                self._send(HTTPStatus.NOT_FOUND, _page("未找到", "Not found", ""))
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= _MAX_BODY:
                self._send(HTTPStatus.BAD_REQUEST, _page("请求无效", "Bad request", ""))
                return
            raw = self.rfile.read(length).decode("utf-8", "replace")
            form = dict(parse_qsl(raw, keep_blank_values=True))
            self._send(*server.pay(form))

        def log_message(self, format: str, *args: Any) -> None:
            log_event(log, "paypage.request", line=format % args)

    return Handler

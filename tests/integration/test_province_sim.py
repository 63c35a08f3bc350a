"""The province simulator as the kiosk's peer: the pay page, signed confirmations, the offline
code, order-status answers, the report and the provisioning CA."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk.core.payment import (
    Payment,
    PaymentConfirmation,
    confirmation_from_dict,
    make_order_id,
    offline_code,
    pay_url,
    verify_confirmation,
)
from kiosk.sim import cli_province
from kiosk.sim.paypage import PayPageServer
from kiosk.sim.province import ProvinceCA, ProvinceSimulator
from kiosk.sync import messages
from tests.support.kiosk_node import DEMO_SECRET, KIOSK_A, KIOSK_B, MakeKiosk


def wait_for(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


@pytest.fixture
def paypage(province: ProvinceSimulator) -> Any:
    page = PayPageServer(province.device_secrets, province.confirm_payment, port=0)
    page.start()
    yield page
    page.stop()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _post(url: str, form: dict[str, str]) -> tuple[int, str]:
    data = urllib.parse.urlencode(form).encode()
    try:
        with urllib.request.urlopen(url, data=data, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_pay_page_confirms_and_the_kiosk_verifies(
    province: ProvinceSimulator, paypage: PayPageServer, make_kiosk: MakeKiosk
) -> None:
    node = make_kiosk(KIOSK_A)
    assert node.client.wait_connected(10)
    order_id = make_order_id(KIOSK_A, 42)
    url = pay_url(paypage.url, KIOSK_A, order_id, 2350, time.time() + 120, DEMO_SECRET)

    status, page = _get(url)
    assert status == 200
    assert "¥23.50" in page and order_id in page
    assert "微信支付 WeChat Pay" in page and "支付宝 Alipay" in page

    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    status, done = _post(paypage.url, {**query, "method": "alipay"})
    assert status == 200
    code = offline_code(DEMO_SECRET, order_id, 2350)
    assert f"{code[:4]} {code[4:]}" in done

    assert wait_for(lambda: node.received("/payment/confirm"), 5)
    c = confirmation_from_dict(node.received("/payment/confirm")[0]["confirmation"])
    assert isinstance(c, PaymentConfirmation)
    ok = verify_confirmation(
        c,
        province_public_key=province.public_key,
        kiosk_id=KIOSK_A,
        order_amounts={order_id: 2350},
        now=time.time(),
    )
    assert isinstance(ok, Payment) and ok.amount_fen == 2350 and ok.method.value == "alipay"

    # paying twice gives the same provider reference (the kiosk dedupes by it)
    _post(paypage.url, {**query, "method": "alipay"})
    assert wait_for(lambda: len(node.received("/payment/confirm")) == 2, 5)
    second = node.received("/payment/confirm")[1]["confirmation"]
    assert second["provider_ref"] == c.provider_ref

    # order status: PAID with the confirmation; an unknown order NOT_PAID
    for oid in (order_id, make_order_id(KIOSK_A, 43)):
        body = messages.order_status_request(KIOSK_A, oid, uuid.uuid4().hex, time.time())
        assert node.client.publish_direct(node.topics.order_status_request, body)
    assert wait_for(lambda: len(node.received("/orders/status/reply")) == 2, 5)
    replies = {r["order_id"]: r for r in node.received("/orders/status/reply")}
    assert replies[order_id]["status"] == "PAID"
    assert replies[order_id]["confirmation"]["provider_ref"] == c.provider_ref
    assert replies[make_order_id(KIOSK_A, 43)]["status"] == "NOT_PAID"


def test_pay_page_refuses_bad_and_expired_links(paypage: PayPageServer) -> None:
    order_id = make_order_id(KIOSK_A, 7)
    good = pay_url(paypage.url, KIOSK_A, order_id, 1000, time.time() + 60, DEMO_SECRET)
    tampered = good.replace("a=1000", "a=1")
    status, page = _get(tampered)
    assert status == 400 and "not valid" in page
    expired = pay_url(paypage.url, KIOSK_A, order_id, 1000, time.time() - 1, DEMO_SECRET)
    status, page = _get(expired)
    assert status == 400 and "closed" in page
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(tampered).query))
    status, page = _post(paypage.url, {**q, "method": "wechat"})
    assert status == 400 and "offline-code" not in page


def test_report_cli_after_sales(
    tmp_path: Path,
    province: ProvinceSimulator,
    make_kiosk: MakeKiosk,
    capsys: pytest.CaptureFixture[str],
) -> None:
    node = make_kiosk(KIOSK_A)
    node.sell(12)
    assert node.wait_drained(20)
    rep = province.sales_report()
    assert sum(q for _, _, q, _ in rep.by_product) == 12
    assert rep.total_fen == sum(f for _, _, f in rep.by_county)
    rc = cli_province.main(["province-sim", "report", "--data-dir", str(province.data_dir)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Sales by product" in out and "黄山毛峰" in out and "砀山县" in out
    assert re.search(rf"{KIOSK_A}\s+12 orders", out)
    assert "12 sale records  OK" in out


def test_report_flags_a_broken_chain(province: ProvinceSimulator, make_kiosk: MakeKiosk) -> None:
    node = make_kiosk(KIOSK_A)
    node.sell(3)
    assert node.wait_drained(20)
    with province._db_lock:  # a record altered in the province's database
        province.db.execute(
            "UPDATE events SET body = json_set(body, '$.paid_fen', 1) WHERE seq = 2"
        )
    (report,) = province.chain_reports()
    assert [p.kind.value for p in report.problems] == ["altered"]


def test_provisioning_ca_signs_only_matching_csrs(tmp_path: Path) -> None:
    ca = ProvinceCA.load_or_create(tmp_path / "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, KIOSK_A)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    cert = x509.load_pem_x509_certificate(ca.sign_csr(csr, KIOSK_A))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == KIOSK_A
    assert cert.issuer == ca.cert.subject
    with pytest.raises(ValueError, match="common name"):
        ca.sign_csr(csr, "AH-340100-0002")
    again = ProvinceCA.load_or_create(tmp_path / "ca")
    assert again.cert == ca.cert


def test_a_second_record_for_a_held_ledger_seq_is_an_alarm(
    province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    """A store that lost its tail redoes its last order: same event id, same ledger seq, a new
    hash. The province must not keep one of the two silently (store-integrity finding 4)."""
    from kiosk.core.ledger import record_hash
    from kiosk.sync.outbox import OutboxItem, Priority
    from tests.support.kiosk_node import sale_body

    node = make_kiosk(KIOSK_A)
    node.sell(2)
    assert node.wait_drained(20)
    held = [e for e in province.events(KIOSK_A) if e["kind"] == "sale"]
    first = held[1]["body"]
    redo = sale_body(KIOSK_A, first["seq"], first["prev_hash"], first["seq"])
    redo["lines"][0]["tx"] = 999_999  # a different vend: a different record, same seq
    body = {k: v for k, v in redo.items() if k != "record_hash"}
    redo["record_hash"] = record_hash(redo["prev_hash"], body)
    assert redo["record_hash"] != first["record_hash"]
    node.outbox.append_many([OutboxItem("sale", redo, Priority.CRITICAL, held[1]["event_id"])])
    node.client.wake()
    assert node.wait_drained(20)  # acked (kept in the alarm), so the kiosk does not resend
    alarms = province.province_alarms(KIOSK_A)
    assert [a["kind"] for a in alarms] == ["ledger_conflict"]
    assert alarms[0]["body"]["body"]["record_hash"] == redo["record_hash"]  # kept in full
    assert f"ledger seq {first['seq']}" in alarms[0]["detail"]


def test_event_ids_are_per_kiosk(province: ProvinceSimulator, make_kiosk: MakeKiosk) -> None:
    """Kiosk B publishing A's future event ids on B's own topic does not erase A's sales."""
    a, b = make_kiosk(KIOSK_A), make_kiosk(KIOSK_B)
    from kiosk.sync.outbox import OutboxItem, Priority
    from tests.support.kiosk_node import sale_body

    squat = [
        OutboxItem(
            "sale", sale_body(KIOSK_B, n, "0" * 64, n), Priority.CRITICAL, f"sale-{KIOSK_A}-{n}"
        )
        for n in (1, 2)
    ]
    b.outbox.append_many(squat)
    b.client.wake()
    assert b.wait_drained(20)
    a.sell(2)  # event ids sale-<A>-1, sale-<A>-2: the same ids B already used
    assert a.wait_drained(20)
    assert province.event_count(KIOSK_A, "sale") == 2
    assert province.event_count(KIOSK_B, "sale") == 2

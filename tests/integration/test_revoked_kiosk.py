"""Issue 14, requirements 5 and 11 ("revoked kiosk"): a stolen cabinet is decommissioned with
`kiosk province-sim revoke`, against the real Mosquitto with the project's broker config
(bootstrap listener for registration, CRL on the kiosk listener), the province simulator with
its registration authority and reconciliation sweep, its pay page, and the whole kiosk app
(`build_app(sync=True)`: controller, store, board emulator, MQTT).

The thief holds the cabinet and its disk: the device key, the certificate and the payment secret
file. The test shows, in order:
1. registration gives the kiosk a payment secret; a re-registration (new key, new token) gives a
   different one, and a renewal signed with the superseded certificate is refused;
2. before the revocation an online sale is paid and reconciles (`matched`);
3. `kiosk province-sim revoke` (CRL written where the broker reads it, broker SIGHUP): the
   kiosk's pay URLs are refused by the pay page and the province confirms nothing;
4. while its old connection is still up (a broker re-reads its CRL only for new handshakes),
   the cabinet sells with an offline code made from the stolen secret: the sale record reaches
   the province and is a `revoked_kiosk_sale` alarm, in `report --reconcile` too;
5. `kick_client` cuts the connection; the broker now refuses the kiosk's certificate (TLS
   handshake), while another kiosk's certificate still gets in.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from kiosk import contract as ui
from kiosk.core.payment import offline_code
from kiosk.core.sale import State
from kiosk.sim.broker import Mosquitto, Pki, export_ca
from kiosk.sim.cli_province import main as province_cli
from kiosk.sim.cli_province import open_provisioning_ca
from kiosk.sim.paypage import PayPageServer
from kiosk.sim.province import BrokerSettings, ProvinceSimulator
from kiosk.sim.province_ca import ProvisioningCA
from kiosk.sim.province_revoke import kick_client
from kiosk.sim.province_secrets import verify_pay_url
from kiosk.sync.identity import cert_fingerprint, generate_device_key, private_key_pem
from kiosk.sync.signing import generate_keypair
from provisioning.register import RegisterError, Registration, build_request, parse_reply
from tests.support.fixtures import running_broker, running_province
from tests.support.kiosk_node import KIOSK_A, KIOSK_B
from tests.support.live_kiosk import (
    WAIT,
    KioskIdentity,
    checkout_one,
    closed,
    live_kiosk,
    wait_for,
)
from tests.support.registration import register_over_mqtt
from tests.support.store import seed_store


@dataclasses.dataclass
class World:
    pki: Pki
    broker: Mosquitto
    registrar: ProvisioningCA
    province: ProvinceSimulator
    page: PayPageServer
    data: Path  # the province's data dir (ca/, provisioning/, province.db)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    own = Pki(tmp_path / "pki")  # revocations must not leak into the session-wide PKI
    data = tmp_path / "province"
    export_ca(own, data / "ca")  # the province's registration CA = the broker's kiosk CA
    registrar = open_provisioning_ca(data)
    try:
        with (
            running_broker(tmp_path / "broker", own, bootstrap=True) as broker,
            running_province(
                data,
                own,
                broker,
                {},
                generate_keypair()[0],
                provisioning_ca=registrar,
                reconcile_after_s=3600.0,  # offline-code sales of honest kiosks: 1 h of grace
                reconcile_every_s=0.2,
            ) as sim,
        ):
            page = PayPageServer(sim.device_secrets, sim.confirm_payment, port=0)
            page.start()
            try:
                yield World(own, broker, registrar, sim, page, data)
            finally:
                page.stop()
    finally:
        registrar.close()


def register(w: World, key: object, kiosk_id: str = KIOSK_A, **kw: object) -> Registration:
    req = build_request(kiosk_id, key, **kw)  # type: ignore[arg-type]
    assert w.broker.bootstrap_port is not None
    reply = register_over_mqtt(w.broker.bootstrap_port, w.pki.ca_file, req)
    pinned = {cert_fingerprint(w.registrar.cert)}  # the CA pinned at provisioning
    reg = parse_reply(reply, req["nonce"], key, kiosk_id, pinned=pinned)  # type: ignore[arg-type]
    assert reg is not None
    return reg


def save_identity(d: Path, key: object, reg: Registration) -> KioskIdentity:
    d.mkdir(parents=True, exist_ok=True)
    ident = KioskIdentity(d / "device-cert.pem", d / "device-key.pem", d / "device-secret")
    ident.cert.write_bytes(reg.cert_pem)
    ident.key.write_bytes(private_key_pem(key))  # type: ignore[arg-type]
    ident.key.chmod(0o600)
    ident.secret.write_bytes(reg.payment_secret)
    ident.secret.chmod(0o600)
    return ident


def tls_refused(w: World, ident: KioskIdentity) -> bool:
    """True when the kiosk listener refuses this client certificate in the TLS handshake."""
    ctx = ssl.create_default_context(cafile=str(w.pki.ca_file))
    ctx.load_cert_chain(str(ident.cert), str(ident.key))
    try:
        with (
            socket.create_connection(("127.0.0.1", w.broker.port), 10) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as s,
        ):
            # TLS 1.3: the server's verdict on the client certificate comes with the first read
            s.sendall(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([5, 2, 0, 30, 0, 0, 0]))
            return s.recv(4) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def pay_page(url: str) -> int:
    """POST the pay page's form for `url` as the shopper's phone does: the HTTP status."""
    q = dict(parse_qsl(urlsplit(url).query))
    data = urlencode({**q, "method": "wechat"}).encode()
    try:
        with urllib.request.urlopen(urlsplit(url)._replace(query="").geturl(), data, 10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_a_revoked_kiosk_is_refused_everywhere(tmp_path: Path, world: World) -> None:
    w = world
    # --- 1. secrets rotate with the identity; a superseded certificate cannot renew ----------
    stolen_key = generate_device_key()
    first = register(w, stolen_key, token=w.registrar.issue_token(KIOSK_A))
    key = generate_device_key()  # the operator re-registers the cabinet with a new key
    current = register(w, key, token=w.registrar.issue_token(KIOSK_A))
    assert current.payment_secret != first.payment_secret
    with pytest.raises(RegisterError, match="cert_superseded"):
        register(w, stolen_key, current_cert_pem=first.cert_pem)
    ident = save_identity(tmp_path / "kiosk-id", key, current)
    seed_store(tmp_path / "kiosk" / "data")
    with live_kiosk(
        tmp_path / "kiosk", w.broker.url, w.pki.ca_file, ident, w.province.public_key, w.page.url
    ) as app:
        # --- 2. an honest online sale, paid on the pay page: reconciled ---------------------
        paid = checkout_one(app)
        assert pay_page(paid.pay_url) == 200
        assert closed(app, paid.order_id) is State.COMPLETED
        assert wait_for(lambda: w.province.event_count(KIOSK_A, "sale") == 1)

        # --- 3. decommission: CRL where the broker reads it, broker re-reads it -------------
        assert w.broker.proc is not None
        rc = province_cli(
            [
                "province-sim",
                "revoke",
                KIOSK_A,
                "--data-dir",
                str(w.data),
                "--crl-out",
                str(w.pki.crl_file),
                "--broker-pid",
                str(w.broker.proc.pid),
            ]
        )
        assert rc == 0
        unpaid = checkout_one(app)
        assert pay_page(unpaid.pay_url) == 400  # the pay page refuses its URLs
        assert verify_pay_url(unpaid.pay_url, w.province.device_secrets) is None
        assert w.province.payment_for(unpaid.order_id) is None

        # --- 4. the thief sells with a code from the stolen secret over the live connection -
        code = offline_code(ident.secret.read_bytes(), unpaid.order_id, unpaid.amount_fen)
        app.controller.post(ui.EnterOfflineCode(code))
        assert closed(app, unpaid.order_id) is State.COMPLETED  # goods out, nothing paid

        def revoked_alarm() -> list[dict[str, object]]:
            alarms = w.province.province_alarms(KIOSK_A)
            return [a for a in alarms if a["kind"] == "revoked_kiosk_sale"]

        assert wait_for(revoked_alarm), w.province.province_alarms(KIOSK_A)
        assert unpaid.order_id in str(revoked_alarm()[0]["detail"])
        assert len(w.province.province_alarms(KIOSK_A)) == 1  # the paid sale is no alarm

        # --- 5. cut the live connection: the broker refuses the certificate from now on ------
        assert app.sync is not None
        client = app.sync.client
        failures = client.stats().connect_failures
        backend = w.pki.backend_client()
        assert w.broker.backend_port is not None
        assert kick_client(
            BrokerSettings(
                url=f"mqtts://127.0.0.1:{w.broker.backend_port}",
                ca_file=w.pki.ca_file,
                cert_file=backend.cert_file,
                key_file=backend.key_file,
            ),
            KIOSK_A,
        )
        # the kiosk reconnects at once and is refused, again and again
        assert wait_for(lambda: client.stats().connect_failures >= failures + 2)
        assert not client.connected
        assert tls_refused(w, ident)
    other_key = generate_device_key()
    other = register(w, other_key, KIOSK_B, token=w.registrar.issue_token(KIOSK_B))
    assert not tls_refused(w, save_identity(tmp_path / "kiosk-b", other_key, other))


def test_report_reconcile_shows_the_revoked_kiosks_sale(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same alarm from the command line, `report --reconcile` (table and --json), on a
    sale record published by the kiosk's outbox after the province revoked it."""
    from tests.support.kiosk_node import KioskNode, sale_body, sync_config

    w = world
    key = generate_device_key()
    reg = register(w, key, token=w.registrar.issue_token(KIOSK_A))
    ident = save_identity(tmp_path / "id", key, reg)
    node = KioskNode(
        KIOSK_A,
        tmp_path / "node",
        sync_config(w.broker.url, w.pki.ca_file, ident.cert, ident.key),
        province_key=w.province.public_key,  # acks are signed (kiosk.sync.acks)
    ).start()
    try:
        assert node.client.wait_connected(WAIT)
        assert w.registrar.revoke(KIOSK_A)
        from kiosk.core.ledger import GENESIS_HASH, record_hash
        from kiosk.sync.outbox import OutboxItem, Priority

        body = sale_body(KIOSK_A, 1, GENESIS_HASH, 1)
        body.update(payment_method="offline-code", provider_ref="")
        body["record_hash"] = record_hash(
            GENESIS_HASH, {k: v for k, v in body.items() if k not in ("record_hash", "prev_hash")}
        )
        node.outbox.append_many([OutboxItem("sale", body, Priority.CRITICAL, "sale-x")])
        node.client.wake()
        assert node.wait_drained(WAIT)
    finally:
        node.close()
    capsys.readouterr()
    rc = province_cli(["province-sim", "report", "--reconcile", "--data-dir", str(w.data)])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert f"ALARM {KIOSK_A} {body['order_id']}: revoked_unpaid" in out
    rc = province_cli(
        ["province-sim", "report", "--reconcile", "--json", "--data-dir", str(w.data)]
    )
    rep = json.loads(capsys.readouterr().out)
    assert rc == 1 and rep["counts"] == {"revoked_unpaid": 1}
    assert [a["kind"] for a in rep["alarms"]] == ["revoked_kiosk_sale"]

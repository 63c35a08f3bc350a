"""Decommissioning a kiosk (`kiosk province-sim revoke KIOSK_ID`): what the province does when a
cabinet is stolen or its disk was copied.

Owns: carrying out a revocation with the provisioning CA (kiosk.sim.province_ca): the kiosk's
payment secret dies (the pay page refuses its URLs, the simulator confirms none of its orders,
and its later offline-code sales become reconciliation alarms: kiosk/sim/province_reconcile.py),
every certificate issued to it goes on the CA's CRL, the CRL is written (atomically) where the
broker reads it, the broker is told to re-read it (SIGHUP: Mosquitto 2.0 reloads `crlfile` for
new TLS handshakes; an established connection stays up) and the kiosk's live connection is cut
by taking over its client id from the backend listener (`kick_client`), so it must reconnect,
and the broker refuses its certificate. Never touches another kiosk's session.
The production procedure is docs/broker.md, "Revoking a kiosk certificate".
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk.sim.province import BrokerSettings
from kiosk.sim.province_ca import ProvisioningCA

__all__ = ["Revocation", "kick_client", "reload_broker", "revoke_kiosk", "write_crl"]


@dataclass(frozen=True)
class Revocation:
    kiosk_id: str
    serials: list[str]  # hex, every certificate of the kiosk now on the CRL
    crl_files: list[Path]


def write_crl(pem: bytes, path: Path) -> None:
    """Replace `path` atomically (a broker reading it never sees half a CRL), mode 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    tmp.chmod(0o644)
    os.replace(tmp, path)


def revoke_kiosk(
    registrar: ProvisioningCA,
    kiosk_id: str,
    crl_files: Sequence[Path],
    extra_certs: Sequence[x509.Certificate] = (),
) -> Revocation:
    """Revoke in the CA's book (secret dead, certificates revoked), then write the CRL."""
    serials = registrar.revoke(kiosk_id, extra_certs)
    pem = registrar.crl_pem()
    for path in crl_files:
        write_crl(pem, path)
    return Revocation(kiosk_id, serials, list(crl_files))


def reload_broker(pid: int) -> None:
    """SIGHUP: Mosquitto re-reads its configuration, the CRL included, for new connections."""
    os.kill(pid, signal.SIGHUP)


def kick_client(settings: BrokerSettings, client_id: str, timeout: float = 10.0) -> bool:
    """Cut `client_id`'s connection and discard its session: connect on the backend listener
    (where client ids are free) with that client id, a clean start and no session expiry, then
    disconnect. The broker drops the older connection (MQTT session takeover). True when the
    broker accepted the connection."""
    host, port, tls = settings.address()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if tls:
        client.tls_set_context(settings.tls_context())
    done = threading.Event()
    ok: list[bool] = []

    def on_connect(_c: object, _u: object, _f: object, rc: object, _p: object = None) -> None:
        ok.append(not getattr(rc, "is_failure", True))
        done.set()

    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    client.connect(host, port, keepalive=30, clean_start=True, properties=props)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return bool(ok and ok[0])

"""`kiosk-provision register` end to end over the real TLS broker of kiosk.sim.broker.

The broker has two listeners: the main one (mutual TLS, user name = certificate CN, ACL: a kiosk
only in `kiosk/v1/<its id>/#`) and the bootstrap one (TLS, no client certificate, anonymous
clients may only write `kiosk/v1/register/+/request` and read `kiosk/v1/register/+/reply`).
The province simulator, connected on the main listener as `province`, answers registrations
with a ProvisioningCA that signs with the broker's CA, so the issued certificate is then proved
on the main listener: it connects, and it can publish in its own tree only.
"""

from __future__ import annotations

import queue
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.config import load_config
from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sim.province import ProvinceSimulator
from kiosk.sim.province_ca import ProvisioningCA
from kiosk.sync.signing import generate_keypair
from kiosk.sync.topics import Topics, register_reply, register_request
from provisioning.cli import main
from provisioning.register import TOKEN_ENV
from tests.support.fixtures import running_broker, running_province
from tests.support.mqtt_record import recording
from tests.support.provisioning import KIOSK_ID

OTHER = "AH-340102-0099"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    with running_broker(tmp_path / "broker", pki, bootstrap=True) as b:
        yield b


@pytest.fixture
def province(tmp_path: Path, pki: Pki, broker: Mosquitto) -> Iterator[ProvinceSimulator]:
    ca = ProvisioningCA(tmp_path / "registrar", ca_key=pki.ca_key, ca_cert=pki.ca_cert)
    try:
        with running_province(
            tmp_path / "province", pki, broker, {}, generate_keypair()[0], provisioning_ca=ca
        ) as sim:
            yield sim
    finally:
        ca.close()


class Probe:
    """A paho client that records what it receives and the broker's answers."""

    def __init__(
        self, port: int, ca: Path, cert: tuple[Path, Path] | None = None, *, name: str = "probe"
    ) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.suback: queue.Queue[list[Any]] = queue.Queue()
        self.connack: queue.Queue[Any] = queue.Queue()
        self.puback: queue.Queue[tuple[int, Any]] = queue.Queue()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        ctx = ssl.create_default_context(cafile=str(ca))
        if cert is not None:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        c.tls_set_context(ctx)
        c.on_connect = lambda _c, _u, _f, rc, _p=None: self.connack.put(rc)
        c.on_subscribe = lambda _c, _u, _m, rcs, _p=None: self.suback.put(list(rcs))
        c.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))
        c.on_publish = lambda _c, _u, mid, rc, _p=None: self.puback.put((mid, rc))
        self.client = c
        c.connect("127.0.0.1", port)
        c.loop_start()

    def connected(self, timeout: float = 5) -> bool:
        try:
            return not self.connack.get(timeout=timeout).is_failure
        except queue.Empty:
            return False

    def subscribe(self, topic: str) -> bool:
        self.client.subscribe(topic, qos=1)
        return not any(r.is_failure for r in self.suback.get(timeout=5))

    def publish(self, topic: str, payload: bytes) -> Any:
        """QoS 1; the PUBACK reason code (MQTT 5 says "not authorized" for an ACL refusal)."""
        info = self.client.publish(topic, payload, qos=1)
        while True:
            mid, rc = self.puback.get(timeout=5)
            if mid == info.mid:
                return rc

    def received(self, timeout: float) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        try:
            out.append(self.messages.get(timeout=timeout))
            while True:
                out.append(self.messages.get_nowait())
        except queue.Empty:
            return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def probes() -> Iterator[Callable[..., Probe]]:
    made: list[Probe] = []

    def make(*a: Any, **kw: Any) -> Probe:
        made.append(Probe(*a, **kw))
        return made[-1]

    yield make
    for p in made:
        p.close()


def province_pair(pki: Pki) -> tuple[Path, Path]:
    """The province's certificate (backend CA): it connects on the backend listener."""
    c = pki.backend_client()
    return c.cert_file, c.key_file


def backend_port(broker: Mosquitto) -> int:
    assert broker.backend_port is not None
    return broker.backend_port


def test_bootstrap_listener_allows_registration_topics_only(
    broker: Mosquitto, pki: Pki, probes: Callable[..., Probe]
) -> None:
    assert broker.bootstrap_port is not None
    recording(broker).tolerate("#", "probes send `{}` and plain words on purpose", b"{}")
    recording(broker).tolerate(register_reply(OTHER), "a probe's plain-word reply", b"reply")
    # the main listener still wants a client certificate
    anon_main = probes(broker.port, pki.ca_file, name="anon-main")
    assert not anon_main.connected(3)
    watcher = probes(backend_port(broker), pki.ca_file, province_pair(pki), name="watcher")
    assert watcher.connected() and watcher.subscribe("#")
    anon = probes(broker.bootstrap_port, pki.ca_file, name="anon")
    assert anon.connected()
    # Mosquitto 2.0 grants any SUBSCRIBE and applies the ACL's read rules on delivery
    assert anon.subscribe("#")
    denied = anon.publish(Topics(KIOSK_ID).events("sale"), b"{}")
    assert denied.is_failure, denied
    assert anon.publish("kiosk/v1/province/catalog", b"{}").is_failure
    assert anon.publish(register_reply(KIOSK_ID), b"{}").is_failure  # cannot forge replies
    assert not anon.publish(register_request(KIOSK_ID), b"{}").is_failure
    got = [t for t, _ in watcher.received(1.0)]
    assert got == [register_request(KIOSK_ID)], got
    # reads: only the replies (any kiosk's: they are public or sealed), nothing else
    for topic in (Topics(KIOSK_ID).acks, Topics(KIOSK_ID).commands, "kiosk/v1/province/keys"):
        assert not watcher.publish(topic, b"{}").is_failure
    assert not watcher.publish(register_reply(OTHER), b"reply").is_failure
    heard = anon.received(1.0)
    assert heard == [(register_reply(OTHER), b"reply")], heard


def test_register_over_the_bootstrap_listener_then_mutual_tls(
    broker: Mosquitto,
    pki: Pki,
    province: ProvinceSimulator,
    make_config: Callable[..., Path],
    probes: Callable[..., Probe],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for topic in (Topics(KIOSK_ID).telemetry, "kiosk/v1/+/acks"):
        recording(broker).tolerate(topic, "probes send plain words to test the ACL, on purpose")
    assert province.provisioning_ca is not None
    cfg_path = make_config(broker_url=broker.url, ca_file=str(pki.ca_file), allow_plaintext="no")
    assert main(["keys", "--config", str(cfg_path)]) == 0
    token = province.provisioning_ca.issue_token(KIOSK_ID)
    boot = ["--bootstrap-url", broker.bootstrap_url]
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    from_file = ["--token-file", str(token_file)]
    capsys.readouterr()
    # a token on the command line is refused before anything is sent
    assert main(["register", "--config", str(cfg_path), "--token", token, *boot]) == 2
    assert "--token is refused" in capsys.readouterr().out
    # without a client certificate the main listener is closed to the kiosk
    assert main(["register", "--config", str(cfg_path), *from_file, "--timeout", "2"]) == 1
    capsys.readouterr()
    assert main(["register", "--config", str(cfg_path), *from_file, "--timeout", "5", *boot]) == 0
    out = capsys.readouterr().out
    assert f"registered {KIOSK_ID}" in out and token not in out
    cfg = load_config(cfg_path)
    assert cfg.sync.cert_file is not None and cfg.sync.key_file is not None
    assert cfg.payments.device_secret_file is not None
    assert cfg.sync.bootstrap_url == broker.bootstrap_url  # recorded for renewals
    secret = province.provisioning_ca.payment_secret(KIOSK_ID)
    assert cfg.payments.device_secret_file.read_bytes() == secret
    assert province.device_secrets[KIOSK_ID] == secret  # the province can confirm payments

    # the issued certificate works on the mutual-TLS listener, in its own tree only
    watcher = probes(backend_port(broker), pki.ca_file, province_pair(pki), name="watcher")
    assert watcher.connected() and watcher.subscribe("kiosk/v1/+/telemetry")
    kiosk = probes(broker.port, pki.ca_file, (cfg.sync.cert_file, cfg.sync.key_file), name="k")
    assert kiosk.connected()
    assert kiosk.publish(Topics(OTHER).telemetry, b"forged").is_failure
    assert not kiosk.publish(Topics(KIOSK_ID).telemetry, b"mine").is_failure
    assert watcher.received(1.0) == [(Topics(KIOSK_ID).telemetry, b"mine")]
    assert kiosk.subscribe("kiosk/v1/+/acks")
    watcher.publish(Topics(OTHER).acks, b"theirs")
    watcher.publish(Topics(KIOSK_ID).acks, b"ours")
    assert kiosk.received(1.0) == [(Topics(KIOSK_ID).acks, b"ours")]

    # the token is spent (here given in the environment); renewal works without one (signed
    # with the current key)
    monkeypatch.setenv(TOKEN_ENV, token)
    assert main(["register", "--config", str(cfg_path), "--timeout", "5", *boot]) == 1
    assert "token_used" in capsys.readouterr().out
    # renewal finds the bootstrap listener in the config: a timer needs no flag
    assert main(["register", "--config", str(cfg_path), "--renew", "--timeout", "5"]) == 0
    assert (
        main(["register", "--config", str(cfg_path), "--renew", "--if-expiring-days", "30", *boot])
        == 0
    )
    assert "no renewal needed" in capsys.readouterr().out

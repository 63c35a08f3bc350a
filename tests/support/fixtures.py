"""The test world's fixtures, registered for every folder by tests/conftest.py.

- `pki` (session): a throwaway CA; server certificate for 127.0.0.1/localhost; client
  certificates on demand with CN = kiosk id (or "province"), which the broker uses as the user
  name (`use_identity_as_username`).
- `mosquitto`: a fresh broker per test on a free loopback port, persistence in the test's tmp
  dir (so a stop()/start() keeps sessions and retained messages), the project's broker config
  (kiosk.sim.broker.mosquitto_conf, docs/broker.md): client id = certificate CN, each kiosk
  writes only its own uplink and reads its own downlink and the province broadcast. On a failed
  test its log tail is printed.
- `proxy`: a TCP proxy in front of the broker that a test can cut.
- `province`: the province simulator connected as `province` on the backend listener; it knows
  KIOSK_A (the demo device secret) and KIOSK_B, and holds the root key (`province_root`):
  `province.key_sets` publishes root-signed key sets and rotates its signing key.
- `make_kiosk`: builds a KioskNode (store + outbox + SyncClient) with a client certificate; it
  trusts the acks signed with the `province` fixture's key (`province_keys`).
- `kiosk_world`: broker + PKI + province + the board emulator on a pty + a seeded kiosk store
  and its config (mqtts://, client certificate, CA, the province's public and root keys, the
  demo device secret); `kiosk_world.run(*args)` starts `kiosk run --headless` on it.

A missing mosquitto binary is a failure, never a skip: scripts/test.sh installs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kiosk.sim.board_emulator import BoardModel, EmulatedBoard
from kiosk.sim.broker import Mosquitto, MosquittoMissing, Pki, TcpProxy
from kiosk.sim.emulator_transports import Emulator, PtyTransport
from kiosk.sim.province import BrokerSettings, ProvinceSimulator
from kiosk.sync.signing import generate_keypair, public_key_pem
from tests.support.child import Child, run_kiosk
from tests.support.config import kiosk_config, write_config
from tests.support.kiosk_node import (
    DEMO_SECRET,
    KIOSK_A,
    KIOSK_B,
    KioskNode,
    MakeKiosk,
    sync_config,
)
from tests.support.mqtt_record import AUDIT_USER, format_violations, start_recording
from tests.support.store import seed_store


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def province_keys() -> tuple[bytes, bytes]:
    return generate_keypair()


@pytest.fixture(scope="session")
def province_root() -> tuple[bytes, bytes]:
    """The province root key pair (signs key sets only: kiosk.sync.keyset)."""
    return generate_keypair()


@contextlib.contextmanager
def running_broker(directory: Path, pki: Pki, **options: Any) -> Iterator[Mosquitto]:
    """A started Mosquitto (kiosk.sim.broker options, e.g. max_inflight, bootstrap); a missing
    binary fails the test (scripts/test.sh installs it), never skips it.

    Recorded (tests/support/mqtt_record.py): every message crossing it is checked against
    docs/mqtt-api.yaml when the block ends; a violation fails the test."""
    options.setdefault("audit_identities", (AUDIT_USER,))
    try:
        broker = Mosquitto(directory, pki, **options)
    except MosquittoMissing as e:
        pytest.fail(str(e), pytrace=False)
    broker.start()
    try:
        rec = start_recording(broker, pki)
    except BaseException:
        broker.stop()
        raise
    try:
        yield broker
    except BaseException:
        rec.tap.stop()
        broker.stop()
        raise
    violations = rec.finish()
    broker.stop()
    if violations:
        pytest.fail(format_violations(violations, f"on the broker in {directory}"), pytrace=False)


@contextlib.contextmanager
def running_province(
    directory: Path,
    pki: Pki,
    broker: Mosquitto,
    device_secrets: dict[str, bytes],
    signing_key: bytes,
    **options: Any,
) -> Iterator[ProvinceSimulator]:
    """The province simulator connected as `province` on the broker's backend listener."""
    cert = pki.backend_client()
    sim = ProvinceSimulator(
        BrokerSettings(
            url=broker.province_url,
            ca_file=pki.ca_file,
            cert_file=cert.cert_file,
            key_file=cert.key_file,
        ),
        directory,
        device_secrets,
        signing_key,
        **options,
    )
    sim.start()
    try:
        assert sim.wait_connected(10), "province simulator did not connect"
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def mosquitto(tmp_path: Path, pki: Pki, request: pytest.FixtureRequest) -> Iterator[Mosquitto]:
    with running_broker(tmp_path / "broker", pki, max_inflight=20) as broker:
        yield broker
    rep = getattr(request.node, "rep_call", None)  # set by tests/conftest.py
    if rep is not None and rep.failed:
        print(f"--- mosquitto log ({broker.log_file}) ---\n{broker.log_tail(80)}")


@pytest.fixture
def proxy(mosquitto: Mosquitto) -> Iterator[TcpProxy]:
    p = TcpProxy(mosquitto.port)
    yield p
    p.close()


@pytest.fixture
def province(
    tmp_path: Path,
    pki: Pki,
    mosquitto: Mosquitto,
    province_keys: tuple[bytes, bytes],
    province_root: tuple[bytes, bytes],
) -> Iterator[ProvinceSimulator]:
    secrets = {KIOSK_A: DEMO_SECRET, KIOSK_B: b"kiosk B secret"}
    with running_province(
        tmp_path / "province", pki, mosquitto, secrets, province_keys[0], root_key=province_root[0]
    ) as sim:
        yield sim


@pytest.fixture
def make_kiosk(
    tmp_path: Path, pki: Pki, mosquitto: Mosquitto, province_keys: tuple[bytes, bytes]
) -> Iterator[MakeKiosk]:
    nodes: list[KioskNode] = []

    def make(
        kiosk_id: str = KIOSK_A,
        *,
        port: int | None = None,
        cert_as: str | None = None,
        data_dir: Path | None = None,
        mqtt_version: str = "5",
        start: bool = True,
        **kw: Any,
    ) -> KioskNode:
        cert = pki.client(cert_as or kiosk_id)
        cfg = sync_config(
            f"mqtts://127.0.0.1:{port or mosquitto.port}",
            pki.ca_file,
            cert.cert_file,
            cert.key_file,
            mqtt_version=mqtt_version,
        )
        kw.setdefault("province_key", province_keys[1])  # checks the `province` fixture's acks
        node = KioskNode(kiosk_id, data_dir or tmp_path / f"kiosk-{kiosk_id}", cfg, **kw)
        nodes.append(node)
        if start:
            node.start()
        return node

    yield make
    for n in nodes:
        with contextlib.suppress(Exception):  # a node a test already closed
            n.close()


@dataclass
class KioskWorld:
    """Everything `kiosk run` needs on a test machine, started; the kiosk itself is started by
    ``run`` (as often as the test likes, on the same store)."""

    pki: Pki
    broker: Mosquitto
    province: ProvinceSimulator
    board: Path  # the emulator's pty
    config: Path
    data: Path

    def run(self, *args: str) -> Child:
        return run_kiosk(self.config, *args)


@pytest.fixture
def kiosk_world(
    tmp_path: Path, pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator
) -> Iterator[KioskWorld]:
    pty = tmp_path / "board"
    emu = Emulator(
        EmulatedBoard(BoardModel.spiral(6, 10, stock=5), time_scale=0.01),
        PtyTransport(pty),
    ).start()
    try:
        cert = pki.client(KIOSK_A)
        pub = tmp_path / "province-public.pem"
        pub.write_bytes(public_key_pem(province.public_key))
        assert province.key_sets is not None
        root = tmp_path / "province-root.pem"
        root.write_bytes(public_key_pem(province.key_sets.root_public))
        data = tmp_path / "kiosk-data"
        seed_store(data)
        cfg = kiosk_config(
            port=pty,
            data_dir=data,
            identity={"kiosk_id": KIOSK_A, "site_name": "e2e"},
            sync={
                "broker_url": f"mqtts://127.0.0.1:{mosquitto.port}",
                "allow_plaintext": None,
                "ca_file": pki.ca_file,
                "cert_file": cert.cert_file,
                "key_file": cert.key_file,
                "province_public_key": pub,
                "province_root_key": root,
                "keepalive_s": 10,
            },
            payments={"pay_url_base": "http://127.0.0.1:9/pay"},
        )
        path = write_config(tmp_path / "kiosk.toml", cfg)
        yield KioskWorld(pki, mosquitto, province, pty, path, data)
    finally:
        emu.stop()

"""Fixtures for kiosk-provision tests: a config written by `init`, test PKI files, emulators."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk.sim.board_emulator import BoardModel, EmulatedBoard, Faults
from kiosk.sim.emulator_transports import Emulator, InProcessTransport
from kiosk.sync.signing import generate_keypair, public_key_pem
from provisioning.cli import main
from tests.support.provisioning import base_args

_names = itertools.count()


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    def make(**over: str) -> Path:
        cfg = tmp_path / "etc" / "kiosk.toml"
        rc = main(["init", "--non-interactive", "--config", str(cfg), *base_args(tmp_path, **over)])
        assert rc == 0
        return cfg

    return make


@pytest.fixture(scope="session")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ca")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test broker CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    p = d / "ca.pem"
    p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return p


@pytest.fixture(scope="session")
def province_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("prov") / "province.pub.pem"
    p.write_bytes(public_key_pem(generate_keypair()[1]))
    return p


@pytest.fixture
def emulator() -> Iterator[Callable[..., str]]:
    started: list[Emulator] = []

    def start(rows: int = 1, cols: int = 4, jammed: set[int] | None = None) -> str:
        name = f"prov-{next(_names)}"
        board = EmulatedBoard(
            BoardModel.spiral(rows=rows, cols=cols),
            time_scale=0.01,
            faults=Faults(jammed=set(jammed or ()), seed=3),
        )
        emu = Emulator(board, InProcessTransport(name)).start()
        started.append(emu)
        return f"emu://{name}"

    yield start
    for e in started:
        e.stop()

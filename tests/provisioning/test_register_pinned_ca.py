"""Attack (issue 14 finding LOW / req. 10): the registration reply's CA was trusted from the
reply itself. Now the CA is pinned at provisioning (`kiosk-provision init --ca-file` with its
fingerprint checked, or `--client-ca-fingerprint`) and `kiosk-provision register` refuses a
reply whose CA, or whose certificate's issuer, is not that CA.

Against the real TLS broker (bootstrap listener) and the province simulator: a registrar
signing with another CA answers the kiosk's genuine request; the kiosk refuses, stores nothing
and keeps its config. Pinning that CA's fingerprint at provisioning (a province whose client
CA is not the broker's) makes the same registration succeed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kiosk.config import load_config
from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sim.province import ProvinceSimulator
from kiosk.sim.province_ca import ProvisioningCA, register_request_topic
from kiosk.sync.identity import cert_fingerprint, load_private_key
from kiosk.sync.signing import generate_keypair
from provisioning.cli import main
from provisioning.files import update_config
from provisioning.keys import IdentityFiles
from provisioning.register import RegisterError, build_request, parse_reply, pinned_ca
from tests.support.fixtures import running_broker, running_province
from tests.support.provisioning import KIOSK_ID


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    with running_broker(tmp_path / "broker", pki, bootstrap=True) as b:
        yield b


@pytest.fixture
def rogue(tmp_path: Path) -> Iterator[ProvisioningCA]:
    ca = ProvisioningCA(tmp_path / "rogue-registrar", name="Not the province's CA")
    try:
        yield ca
    finally:
        ca.close()


@pytest.fixture
def rogue_province(
    tmp_path: Path, pki: Pki, broker: Mosquitto, rogue: ProvisioningCA
) -> Iterator[ProvinceSimulator]:
    with running_province(
        tmp_path / "province", pki, broker, {}, generate_keypair()[0], provisioning_ca=rogue
    ) as sim:
        yield sim


def _register(cfg: Path, token: str, tmp_path: Path, broker: Mosquitto) -> int:
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    return main(
        [
            "register",
            "--config",
            str(cfg),
            "--token-file",
            str(token_file),
            "--bootstrap-url",
            broker.bootstrap_url,
            "--timeout",
            "10",
        ]
    )


def test_a_reply_signed_by_another_ca_is_refused(
    broker: Mosquitto,
    pki: Pki,
    rogue: ProvisioningCA,
    rogue_province: ProvinceSimulator,
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    cfg_path = make_config(broker_url=broker.url, ca_file=str(pki.ca_file), allow_plaintext="no")
    assert main(["keys", "--config", str(cfg_path)]) == 0
    files = IdentityFiles(cfg_path.parent)
    assert pinned_ca(load_config(cfg_path)) == {cert_fingerprint(pki.ca_cert).replace(":", "")}
    before = cfg_path.read_text()
    capsys.readouterr()

    assert _register(cfg_path, rogue.issue_token(KIOSK_ID), tmp_path, broker) == 1
    out = capsys.readouterr().out
    assert "registration failed" in out and "is not the CA pinned at provisioning" in out, out
    assert cert_fingerprint(rogue.cert) in out  # names the CA it refused
    assert not files.cert.exists() and not files.client_ca.exists() and not files.secret.exists()
    assert cfg_path.read_text() == before  # still not switched to mutual TLS

    # a province whose client CA is not the broker's: pinned at provisioning, then accepted
    update_config(cfg_path, {"sync.client_ca_fingerprint": cert_fingerprint(rogue.cert)})
    assert _register(cfg_path, rogue.issue_token(KIOSK_ID), tmp_path, broker) == 0, (
        capsys.readouterr().out
    )
    assert files.client_ca.read_bytes().strip() == rogue.cert_path.read_bytes().strip()


def test_the_chain_must_match_the_pinned_ca_too(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """A reply that names the pinned CA but carries a certificate another CA issued."""
    real = ProvisioningCA(tmp_path / "real")
    other = ProvisioningCA(tmp_path / "other")
    try:
        cfg = make_config()
        assert main(["keys", "--config", str(cfg)]) == 0
        key = load_private_key(IdentityFiles(cfg.parent).key.read_bytes())
        req = build_request(KIOSK_ID, key, token=other.issue_token(KIOSK_ID))
        answer = other.handle_request(register_request_topic(KIOSK_ID), json.dumps(req).encode())
        assert answer is not None
        reply = json.loads(answer[1])
        pinned = {cert_fingerprint(real.cert)}
        with pytest.raises(RegisterError, match="not the CA pinned"):
            parse_reply(answer[1], req["nonce"], key, KIOSK_ID, pinned=pinned)
        reply["ca"] = real.cert_path.read_text()  # the pinned CA's name on another CA's cert
        with pytest.raises(RegisterError, match="not issued by the pinned CA"):
            parse_reply(json.dumps(reply).encode(), req["nonce"], key, KIOSK_ID, pinned=pinned)
        with pytest.raises(RegisterError, match="not the CA pinned"):
            parse_reply(answer[1], req["nonce"], key, KIOSK_ID, pinned=set())
    finally:
        real.close()
        other.close()

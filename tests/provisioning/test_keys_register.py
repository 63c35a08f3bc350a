"""Device keys, CSR, and registration: ProvisioningCA plus the kiosk's request/reply handling,
in-process (handler functions called directly; no broker in these tests)."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from kiosk.config import load_config
from kiosk.sim.province_ca import ProvisioningCA, register_reply_topic, register_request_topic
from kiosk.sync.identity import cert_cn, cert_fingerprint, load_private_key
from provisioning.cli import main
from provisioning.keys import IdentityFiles
from provisioning.register import (
    RegisterError,
    build_request,
    parse_reply,
    store_registration,
)
from tests.support.provisioning import KIOSK_ID


def test_keys_private_key_0600_never_printed(
    make_config: Callable[..., Path], capfd: pytest.CaptureFixture[str]
) -> None:
    cfg = make_config()
    capfd.readouterr()
    assert main(["keys", "--config", str(cfg)]) == 0
    out, err = capfd.readouterr()
    files = IdentityFiles(cfg.parent)
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    pem = files.key.read_text()
    body = "".join(pem.splitlines()[1:-1])
    for text in (out, err):
        assert "PRIVATE KEY" not in text
        assert body[:40] not in text and body[-40:] not in text
    csr = x509.load_pem_x509_csr(files.csr.read_bytes())
    assert cert_cn(csr) == KIOSK_ID and csr.is_signature_valid
    # a second run refuses; --force keeps a backup
    assert main(["keys", "--config", str(cfg)]) == 1
    assert files.key.read_text() == pem
    assert main(["keys", "--config", str(cfg), "--force"]) == 0
    assert files.key.read_text() != pem
    assert [p.read_text() for p in cfg.parent.glob("device-key.pem.bak-*")] == [pem]


@pytest.fixture
def ca(tmp_path: Path) -> ProvisioningCA:
    return ProvisioningCA(tmp_path / "province-ca")


@pytest.fixture
def device(make_config: Callable[..., Path]) -> tuple[Path, IdentityFiles]:
    cfg = make_config()
    assert main(["keys", "--config", str(cfg)]) == 0
    return cfg, IdentityFiles(cfg.parent)


def pin(ca: ProvisioningCA) -> set[str]:
    """The CA pinned at provisioning: here the registrar's own."""
    return {cert_fingerprint(ca.cert)}


def _roundtrip(ca: ProvisioningCA, req: dict[str, object]) -> tuple[str, bytes]:
    answer = ca.handle_request(register_request_topic(KIOSK_ID), json.dumps(req).encode())
    assert answer is not None
    return answer


def test_register_with_token_then_token_is_spent(
    ca: ProvisioningCA, device: tuple[Path, IdentityFiles]
) -> None:
    cfg_path, files = device
    key = load_private_key(files.key.read_bytes())
    token = ca.issue_token(KIOSK_ID)
    req = build_request(KIOSK_ID, key, token=token)
    topic, payload = _roundtrip(ca, req)
    assert topic == register_reply_topic(KIOSK_ID) == f"kiosk/v1/register/{KIOSK_ID}/reply"
    assert token not in payload.decode()
    reply = json.loads(payload)
    assert reply["ok"] is True
    assert "payment_secret" in reply and ca.payment_secret(KIOSK_ID) is not None
    secret = ca.payment_secret(KIOSK_ID)
    assert secret is not None and secret.decode().strip() not in payload.decode()  # sealed

    reg = parse_reply(payload, req["nonce"], key, KIOSK_ID, pinned=pin(ca))
    assert reg is not None
    cert = x509.load_pem_x509_certificate(reg.cert_pem)
    assert cert_cn(cert) == KIOSK_ID
    cert.verify_directly_issued_by(ca.cert)
    assert reg.payment_secret == secret

    cfg = store_registration(reg, files, cfg_path)
    assert cfg.sync.cert_file == files.cert and cfg.sync.key_file == files.key
    assert cfg.payments.device_secret_file == files.secret
    assert stat.S_IMODE(files.secret.stat().st_mode) == 0o600
    assert load_config(cfg_path).sync.cert_file == files.cert

    # the token is one-time: a second use is refused, even for the same kiosk
    req2 = build_request(KIOSK_ID, key, token=token)
    _, payload2 = _roundtrip(ca, req2)
    assert json.loads(payload2)["error"] == "token_used"
    with pytest.raises(RegisterError, match="token_used"):
        parse_reply(payload2, req2["nonce"], key, KIOSK_ID, pinned=pin(ca))


def test_token_rules(ca: ProvisioningCA, device: tuple[Path, IdentityFiles]) -> None:
    _, files = device
    key = load_private_key(files.key.read_bytes())
    other = ca.issue_token("AH-340102-0008")
    for token, code in (("nope", "token_unknown"), (other, "token_other_kiosk")):
        _, p = _roundtrip(ca, build_request(KIOSK_ID, key, token=token))
        assert json.loads(p)["error"] == code
    expired = ca.issue_token(KIOSK_ID, ttl_s=-1)
    _, p = _roundtrip(ca, build_request(KIOSK_ID, key, token=expired))
    assert json.loads(p)["error"] == "token_expired"
    # topic and body must agree
    req = build_request(KIOSK_ID, key, token=ca.issue_token())
    p2 = ca.handle_request(register_request_topic("AH-340102-0009"), json.dumps(req).encode())
    assert p2 is not None and json.loads(p2[1])["error"] == "bad_request"
    assert ca.handle_request("kiosk/v1/AH-340102-0007/events/sale", b"{}") is None


def test_reply_for_another_key_is_refused(
    ca: ProvisioningCA, device: tuple[Path, IdentityFiles]
) -> None:
    from kiosk.sync.identity import generate_device_key

    _, files = device
    key = load_private_key(files.key.read_bytes())
    req = build_request(KIOSK_ID, generate_device_key(), token=ca.issue_token())
    _, payload = _roundtrip(ca, req)
    with pytest.raises(RegisterError, match="not for this device's key"):
        parse_reply(payload, req["nonce"], key, KIOSK_ID, pinned=pin(ca))
    assert parse_reply(payload, "other-nonce", key, KIOSK_ID, pinned=pin(ca)) is None


def test_renewal_without_token(ca: ProvisioningCA, device: tuple[Path, IdentityFiles]) -> None:
    cfg_path, files = device
    key = load_private_key(files.key.read_bytes())
    req = build_request(KIOSK_ID, key, token=ca.issue_token(KIOSK_ID))
    reg = parse_reply(_roundtrip(ca, req)[1], req["nonce"], key, KIOSK_ID, pinned=pin(ca))
    assert reg is not None
    store_registration(reg, files, cfg_path)
    secret = files.secret.read_bytes()

    renew = build_request(KIOSK_ID, key, current_cert_pem=files.cert.read_bytes())
    assert "token" not in renew and "sig" in renew
    reg2 = parse_reply(_roundtrip(ca, renew)[1], renew["nonce"], key, KIOSK_ID, pinned=pin(ca))
    assert reg2 is not None and reg2.cert_pem != reg.cert_pem
    assert reg2.payment_secret != secret  # a renewal rotates the payment secret
    assert ca.secrets_of(KIOSK_ID).previous == secret  # kept for the overlap

    tampered = dict(renew, nonce="beef")
    assert json.loads(_roundtrip(ca, tampered)[1])["error"] == "bad_signature"


def test_uses_an_existing_ca(tmp_path: Path, device: tuple[Path, IdentityFiles]) -> None:
    from kiosk.sim.province import ProvinceCA

    province = ProvinceCA.load_or_create(tmp_path / "sim-ca")
    ca = ProvisioningCA(tmp_path / "tokens", ca_key=province.key, ca_cert=province.cert)
    _, files = device
    key = load_private_key(files.key.read_bytes())
    req = build_request(KIOSK_ID, key, token=ca.issue_token())
    reg = parse_reply(_roundtrip(ca, req)[1], req["nonce"], key, KIOSK_ID, pinned=pin(ca))
    assert reg is not None
    x509.load_pem_x509_certificate(reg.cert_pem).verify_directly_issued_by(province.cert)

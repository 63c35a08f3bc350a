"""Issue 14, requirement 5: payment secrets have a lifecycle at the province's registration
authority (kiosk.sim.province_ca, kiosk.sim.province_secrets), in-process, no broker.

- every registration and renewal issues a NEW payment secret (sealed to the device key);
- after a renewal the previous secret still verifies pay URLs of orders shown before the
  rotation (expiring within PREVIOUS_SECRET_OVERLAP_S of it), nothing later; the pay page makes
  that order's offline code with the secret that signed the URL;
- after a re-registration with a token the previous secret is dead at once;
- renewal needs the current certificate: one superseded by a re-registration with a new key, a
  revoked kiosk's, or a replayed request are refused; a retry with the same key after a lost
  reply is not;
- revocation kills the secret, puts every certificate of the kiosk on the CRL, and a new token
  brings the kiosk id back with a new secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk.clock import ManualClock
from kiosk.core.payment import make_order_id, offline_code, pay_url
from kiosk.sim.province_ca import PREVIOUS_SECRET_OVERLAP_S, ProvisioningCA, register_request_topic
from kiosk.sim.province_secrets import SecretBook, verify_pay_url
from kiosk.sync.identity import cert_fingerprint, generate_device_key
from provisioning.register import Registration, build_request, parse_reply
from tests.support.provisioning import KIOSK_ID

BASE = "https://pay.example.invalid/p"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture
def ca(tmp_path: Path, clock: ManualClock) -> Iterator[ProvisioningCA]:
    ca = ProvisioningCA(tmp_path / "registrar", clock)
    yield ca
    ca.close()


def ask(ca: ProvisioningCA, req: dict[str, Any]) -> dict[str, Any]:
    answer = ca.handle_request(register_request_topic(KIOSK_ID), json.dumps(req).encode())
    assert answer is not None
    reply = json.loads(answer[1])
    assert isinstance(reply, dict)
    return reply


def register(ca: ProvisioningCA, key: ec.EllipticCurvePrivateKey, **kw: Any) -> Registration:
    req = build_request(KIOSK_ID, key, **kw)
    answer = ca.handle_request(register_request_topic(KIOSK_ID), json.dumps(req).encode())
    assert answer is not None
    reg = parse_reply(answer[1], req["nonce"], key, KIOSK_ID, pinned={cert_fingerprint(ca.cert)})
    assert reg is not None
    return reg


def url(secret: bytes, seq: int, expires_at: float) -> str:
    return pay_url(BASE, KIOSK_ID, make_order_id(KIOSK_ID, seq, "7K2Q"), 990, expires_at, secret)


def test_renewal_rotates_and_the_old_secret_only_pays_orders_from_before(
    ca: ProvisioningCA, clock: ManualClock
) -> None:
    key = generate_device_key()
    first = register(ca, key, token=ca.issue_token(KIOSK_ID))
    book = SecretBook({}, ca)
    assert book[KIOSK_ID] == first.payment_secret
    shown_before = url(first.payment_secret, 1, clock.time() + 120)  # on screen at renewal

    renewed = register(ca, key, current_cert_pem=first.cert_pem)
    assert renewed.payment_secret != first.payment_secret
    assert book[KIOSK_ID] == renewed.payment_secret
    rotated = clock.time()

    # the order shown before the rotation can still be paid; its offline code is the old one
    found = verify_pay_url(shown_before, book)
    assert found is not None and found[1] == first.payment_secret
    assert offline_code(found[1], found[0].order_id, 990) == offline_code(
        first.payment_secret, found[0].order_id, 990
    )
    # a new order signed with the new secret is fine
    assert verify_pay_url(url(renewed.payment_secret, 2, rotated + 120), book) is not None
    # a kiosk still signing with the old secret long after: refused
    late = url(first.payment_secret, 3, rotated + PREVIOUS_SECRET_OVERLAP_S + 1)
    assert verify_pay_url(late, book) is None
    # a second renewal: the first secret is gone for good
    register(ca, key, current_cert_pem=renewed.cert_pem)
    assert verify_pay_url(shown_before, book) is None


def test_re_registration_gives_a_new_secret_and_kills_the_old_one_at_once(
    ca: ProvisioningCA, clock: ManualClock
) -> None:
    old_key = generate_device_key()
    first = register(ca, old_key, token=ca.issue_token(KIOSK_ID))
    shown = url(first.payment_secret, 1, clock.time() + 120)
    new_key = generate_device_key()  # `kiosk-provision keys --force` after a suspected theft
    second = register(ca, new_key, token=ca.issue_token(KIOSK_ID))
    assert second.payment_secret != first.payment_secret
    book = SecretBook({}, ca)
    assert verify_pay_url(shown, book) is None  # no overlap after a re-registration
    assert verify_pay_url(url(second.payment_secret, 2, clock.time() + 120), book) is not None


def test_renewal_needs_the_current_certificate(ca: ProvisioningCA) -> None:
    old_key = generate_device_key()
    first = register(ca, old_key, token=ca.issue_token(KIOSK_ID))
    # a renewal whose reply was lost: the kiosk retries with the same key and its old
    # certificate, and that still works (same key, same holder)
    lost = build_request(KIOSK_ID, old_key, current_cert_pem=first.cert_pem)
    assert ask(ca, lost)["ok"]
    retry = register(ca, old_key, current_cert_pem=first.cert_pem)
    # the same request again (a replay from the wire) is refused: it would rotate the secret
    # behind the kiosk's back
    replayed = ask(ca, lost)
    assert not replayed["ok"] and replayed["error"] == "replayed", replayed

    # re-registration with a new key supersedes every certificate of the old key
    new_key = generate_device_key()
    register(ca, new_key, token=ca.issue_token(KIOSK_ID))
    for cert in (first.cert_pem, retry.cert_pem):
        reply = ask(ca, build_request(KIOSK_ID, old_key, current_cert_pem=cert))
        assert not reply["ok"] and reply["error"] == "cert_superseded", reply
    assert ca.secrets_of(KIOSK_ID).current != retry.payment_secret  # nothing rotated


def test_revocation_kills_the_secret_and_lists_every_certificate(
    ca: ProvisioningCA, clock: ManualClock
) -> None:
    key = generate_device_key()
    first = register(ca, key, token=ca.issue_token(KIOSK_ID))
    renewed = register(ca, key, current_cert_pem=first.cert_pem)
    book = SecretBook({"AH-340100-0002": b"another kiosk\n"}, ca)
    shown = url(renewed.payment_secret, 1, clock.time() + 120)
    assert verify_pay_url(shown, book) is not None

    serials = ca.revoke(KIOSK_ID)
    assert KIOSK_ID not in book and book.revoked_at(KIOSK_ID) == clock.time()
    assert list(book) == ["AH-340100-0002"]  # the other kiosk is untouched
    assert verify_pay_url(shown, book) is None  # its pay URLs are refused
    assert verify_pay_url(url(first.payment_secret, 2, clock.time() + 60), book) is None
    assert ca.payment_secret(KIOSK_ID) is None
    crl = x509.load_pem_x509_crl(ca.crl_pem())
    assert crl.is_signature_valid(ca.cert.public_key())  # type: ignore[arg-type]
    on_crl = {format(r.serial_number, "x") for r in crl}
    for pem in (first.cert_pem, renewed.cert_pem):
        assert format(x509.load_pem_x509_certificate(pem).serial_number, "x") in on_crl
    assert set(serials) == on_crl
    # a revoked kiosk cannot renew its way back ...
    reply = ask(ca, build_request(KIOSK_ID, key, current_cert_pem=renewed.cert_pem))
    assert reply["error"] == "revoked"
    # ... a replacement cabinet registered with a new token can (new key, new secret)
    replacement = register(ca, generate_device_key(), token=ca.issue_token(KIOSK_ID))
    assert book[KIOSK_ID] == replacement.payment_secret != renewed.payment_secret
    assert set(serials) <= {
        format(r.serial_number, "x") for r in x509.load_pem_x509_crl(ca.crl_pem())
    }  # the stolen cabinet's certificates stay revoked


def test_sign_csr_certificates_are_revoked_too(tmp_path: Path) -> None:
    """`province-sim sign-csr` records what it issues, so `province-sim revoke` finds it."""
    from cryptography.hazmat.primitives import serialization

    from kiosk.sim.cli_province import main as province_cli
    from kiosk.sync.identity import csr_pem

    data = tmp_path / "province"
    csr = tmp_path / "k.csr"
    csr.write_bytes(csr_pem(generate_device_key(), KIOSK_ID))
    out = tmp_path / "k.crt"
    args = ["province-sim", "sign-csr", str(csr), "--kiosk-id", KIOSK_ID, "--out", str(out)]
    assert province_cli([*args, "--data-dir", str(data)]) == 0
    extra = tmp_path / "other.crl"
    rev = ["province-sim", "revoke", KIOSK_ID, "--data-dir", str(data), "--crl-out", str(extra)]
    assert province_cli(rev) == 0
    serial = x509.load_pem_x509_certificate(out.read_bytes()).serial_number
    for path in (data / "ca" / "ca.crl", extra):
        crl = x509.load_pem_x509_crl(path.read_bytes())
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None
        assert path.read_bytes() == crl.public_bytes(serialization.Encoding.PEM)
    assert province_cli(["province-sim", "revoke", "not a kiosk", "--data-dir", str(data)]) == 2

"""The broker configuration is written in one place (kiosk.sim.broker) and docs/broker.md shows
exactly that; the kiosk ACL grants exactly what kiosk.sync.topics says a kiosk does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kiosk.sim.broker import (
    BACKEND_ACL,
    BOOTSTRAP_ACL,
    backend_acl,
    kiosk_acl,
    production_conf,
)
from kiosk.sync.topics import Topics

DOC = Path(__file__).resolve().parents[2] / "docs" / "broker.md"


def test_docs_show_the_generated_config() -> None:
    doc = DOC.read_text()
    audit = backend_acl(("monitor",))
    for text in (production_conf(), kiosk_acl(), BACKEND_ACL, BOOTSTRAP_ACL, audit):
        assert f"```conf\n{text}```" in doc


def test_production_conf_binds_identity() -> None:
    conf = production_conf()
    kiosk_section = conf.split("listener 8883")[1].split("\nlistener ")[0]
    for line in (
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "allow_anonymous false",
        "crlfile /etc/mosquitto/certs/kiosk-ca.crl",
    ):
        assert line in kiosk_section.splitlines(), line
    assert re.search(r"^max_packet_size \d+$", conf, re.M)


def _patterns(access: str) -> set[str]:
    return {
        line.split(" ", 2)[2]
        for line in kiosk_acl().splitlines()
        if line.startswith(f"pattern {access} ")
    }


def test_kiosk_acl_is_exactly_uplink_write_and_downlink_read() -> None:
    t = Topics("ACLKIOSKID")

    def acl(topic: str) -> str:
        return topic.replace("kiosk/v1/ACLKIOSKID/", "kiosk/v1/%u/")

    write, read = _patterns("write"), _patterns("read")
    assert write == {acl(x) for x in t.uplink()}
    assert read == {acl(f) for f, _ in t.subscriptions()}
    assert not _patterns("readwrite") and not _patterns("deny")
    assert not any("topic " in line for line in kiosk_acl().splitlines())
    # nothing a kiosk reads is writable by it, and it can reach no other kiosk's tree
    assert not write & read
    assert all(p.startswith("kiosk/v1/%u/") for p in write)
    assert all("#" not in p for p in write | read)


def test_audit_identities_read_everything_and_write_nothing() -> None:
    acl = backend_acl(("audit", "monitor"))
    assert acl.startswith(BACKEND_ACL) and backend_acl() == BACKEND_ACL
    for name in ("audit", "monitor"):
        block = acl.split(f"user {name}\n", 1)[1].split("\nuser ", 1)[0]
        rules = [ln for ln in block.splitlines() if ln.startswith("topic")]
        assert rules == ["topic read #", "topic read $SYS/#"], rules
    for bad in ("", "province", "a b", "x/#", "+"):
        with pytest.raises(ValueError):
            backend_acl((bad,))

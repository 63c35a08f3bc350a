"""Config loading and validation: every path reports file, key, value and what is allowed."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from kiosk.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    SiteType,
    demo_config_path,
    load_config,
    resolve_config_path,
)

GOOD = """
[identity]
kiosk_id = "AH-341524-0007"
site_name = "金寨县人民医院"
site_type = "hospital"
area_code = "341524"

[sync]
broker_url = "mqtt://127.0.0.1:1883"
allow_plaintext = true

[store]
data_dir = "data"
"""


def write(tmp_path: Path, text: str, name: str = "kiosk.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def issues_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, text))
    return [str(i) for i in ei.value.issues]


def with_section(section: str, body: str) -> str:
    """GOOD plus extra keys in `section` (appended to the existing table or a new one)."""
    if f"[{section}]" in GOOD:
        return GOOD.replace(f"[{section}]", f"[{section}]\n{body}", 1)
    return GOOD + f"\n[{section}]\n{body}\n"


def test_demo_config_is_valid() -> None:
    cfg = load_config(demo_config_path())
    assert cfg.identity.site_type is SiteType.HOSPITAL
    assert cfg.payments.device_secret_file is not None
    assert cfg.payments.device_secret_file.is_file()


def test_good_config_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.identity.kiosk_id == "AH-341524-0007"
    assert cfg.store.data_dir == tmp_path / "data"
    assert cfg.hardware.boards == (0,)
    assert cfg.payments.payment_window_s == 120
    assert cfg.payments.max_cart_items == 5
    assert cfg.ui.language == "zh"


def test_three_mistakes_reported_together(tmp_path: Path) -> None:
    text = GOOD.replace('"hospital"', '"hospitl"')
    text += '\n[hardware]\nbaud = 12345\n\n[ui]\nlanguag = "en"\n'
    found = issues_of(tmp_path, text)
    assert len(found) == 3, found
    lines = text.splitlines()  # each problem says the line of its key (1-based)
    at = {k: f"{tmp_path / 'kiosk.toml'}, line {lines.index(k) + 1}: " for k in lines if k}
    assert found[0].startswith(
        at['site_type = "hospitl"'] + "identity.site_type = 'hospitl': must be one of agency,"
    )
    assert (
        found[1]
        == at["baud = 12345"]
        + "hardware.baud = 12345: must be one of 9600, 19200, 38400, 57600, 115200, 230400"
    )
    assert found[2].startswith(
        at['languag = "en"'] + "ui.languag = 'en': unknown key; allowed in [ui]: width,"
    )


@pytest.mark.parametrize(
    ("section", "body", "expected"),
    [
        (
            "hardware",
            'cabinet = "drawer"',
            r"hardware\.cabinet = 'drawer': must be one of spiral, locker",
        ),
        ("hardware", "rows = 0", r"hardware\.rows = 0: must be between 1 and 20"),
        ("hardware", 'rows = "6"', r"hardware\.rows = '6': must be a whole number"),
        ("hardware", "rows = true", r"hardware\.rows = True: must be a whole number"),
        ("hardware", "boards = []", r"hardware\.boards = \[\]: must be a non-empty list"),
        (
            "hardware",
            "boards = [1, 300]",
            r"hardware\.boards = \[1, 300\]: must be a list of board addresses 0\.\.15",
        ),
        ("hardware", "boards = [2, 2]", r"must not repeat an address"),
        ("hardware", 'driver = "usb"', r"hardware\.driver = 'usb': must be one of serial"),
        ("hardware", 'port = " "', r"hardware\.port = ' ': must name a serial port"),
        ("hardware", "chilled = 1", r"hardware\.chilled = 1: must be true or false"),
        ("hardware", 'max_temperature_c = "cold"', r"max_temperature_c = 'cold': must be a number"),
        (
            "hardware",
            'cabinet = "locker"',
            r"hardware\.default_capacity = 10: a locker holds 1 item",
        ),
        ("sync", 'mqtt_version = "4"', r"sync\.mqtt_version = '4': must be one of 5, 3\.1\.1"),
        (
            "sync",
            'ca_file = "nowhere.pem"',
            r"sync\.ca_file = '.*nowhere\.pem': file does not exist",
        ),
        ("sync", 'cert_file = "c.pem"', r"cert_file and key_file go together"),
        ("sync", "ca_file = 5", r"sync\.ca_file = 5: must be a path string"),
        ("sync", "resend_window = 0", r"sync\.resend_window = 0: must be between 1 and"),
        (
            "sync",
            "ack_timeout_s = 120\nresend_cap_s = 60",
            r"sync\.resend_cap_s = 60: must not be shorter than sync\.ack_timeout_s",
        ),
        ("sync", 'bootstrap_url = "mqtt://h:1"', r"bootstrap_url = 'mqtt://h:1': must be a URL"),
        (
            "payments",
            'pay_url_base = "ftp://x"',
            r"pay_url_base = 'ftp://x': must be a URL starting",
        ),
        ("payments", "payment_window_s = 5", r"payment_window_s = 5: must be between 30 and 900"),
        ("payments", "max_extensions = 11", r"max_extensions = 11: must be between 0 and 10"),
        (
            "payments",
            'device_secret_file = "s"',
            r"device_secret_file = '.*s': file does not exist",
        ),
        ("ui", 'orientation = "landscape"', r"ui\.orientation = 'landscape': does not match"),
        ("ui", 'language = "fr"', r"ui\.language = 'fr': must be one of zh, en"),
        ("ui", "dim_after_s = 20", r"ui\.dim_after_s = 20: must not be shorter than"),
        ("ui", 'service_pin_hash = "1234"', r"service_pin_hash = '1234': must be empty or pbkdf2"),
        ("ui", 'font_path = "none.ttf"', r"ui\.font_path = '.*none\.ttf': file does not exist"),
        ("store", "min_free_mb = 0", r"store\.min_free_mb = 0: must be between"),
        ("logging", 'level = "loud"', r"logging\.level = 'loud': must be one of debug"),
        ("logging", 'format = "xml"', r"logging\.format = 'xml': must be one of kv, json"),
        ("identity", "latitude = 95.0", r"identity\.latitude = 95\.0: must be between -90 and 90"),
        ("identity", 'longitude = "east"', r"identity\.longitude = 'east': must be a number"),
    ],
)
def test_each_bad_value(tmp_path: Path, section: str, body: str, expected: str) -> None:
    found = issues_of(tmp_path, with_section(section, body))
    assert any(re.search(expected, line) for line in found), found
    where = re.escape(str(tmp_path / "kiosk.toml")) + r"(, line \d+)?: "  # a key not in the file
    assert all(re.match(where, line) for line in found), found  # has no line


def test_identity_rules(tmp_path: Path) -> None:
    text = GOOD.replace("AH-341524-0007", "341524-0007").replace('"341524"', '"110101"')
    found = "\n".join(issues_of(tmp_path, text))
    assert "identity.kiosk_id = '341524-0007': must be AH-<6-digit GB/T 2260 area code>" in found
    assert "identity.area_code = '110101': must be a 6-digit GB/T 2260 code in Anhui" in found


def test_kiosk_id_area_must_match(tmp_path: Path) -> None:
    found = issues_of(tmp_path, GOOD.replace('area_code = "341524"', 'area_code = "340828"'))
    assert any(
        "area code in the id (341524) differs from identity.area_code (340828)" in f for f in found
    )


def test_site_name_empty_and_site_type_choices(tmp_path: Path) -> None:
    text = GOOD.replace('"金寨县人民医院"', '"  "').replace('"hospital"', '"bank"')
    found = "\n".join(issues_of(tmp_path, text))
    assert "identity.site_name = '  ': must not be empty" in found
    allowed = ", ".join(s.value for s in SiteType)
    assert f"identity.site_type = 'bank': must be one of {allowed}" in found


def test_missing_required(tmp_path: Path) -> None:
    found = issues_of(tmp_path, GOOD.replace('kiosk_id = "AH-341524-0007"\n', ""))
    assert any("identity.kiosk_id = (missing): required key is missing" in f for f in found)
    found = issues_of(tmp_path, "[store]\ndata_dir = 'x'\n")
    assert any("no [identity] section" in f and "kiosk-provision init" in f for f in found)
    found = issues_of(tmp_path, "# nothing yet\n")  # an empty file (issue 17 review)
    assert any("the config file is empty" in f and "kiosk-provision init" in f for f in found)


def test_unknown_section_and_non_table(tmp_path: Path) -> None:
    found = "\n".join(issues_of(tmp_path, GOOD + "\n[paymnts]\nx = 1\n"))
    assert "paymnts = {'x': 1}: unknown section; allowed: identity, hardware" in found
    found = "\n".join(issues_of(tmp_path, "ui = 3\n" + GOOD))
    assert "ui = 3: must be a [section] table" in found


def test_plaintext_refused_unless_allowed(tmp_path: Path) -> None:
    found = issues_of(tmp_path, GOOD.replace("allow_plaintext = true", ""))
    assert any("plaintext MQTT is refused" in f for f in found)
    found = issues_of(tmp_path, GOOD.replace("mqtt://", "mqtts://"))
    assert any("sync.ca_file = (missing): required with mqtts://" in f for f in found)
    found = issues_of(tmp_path, GOOD.replace("mqtt://127.0.0.1:1883", "http://x"))
    assert any(
        "sync.broker_url = 'http://x': must be a URL starting with mqtt:// or mqtts://" in f
        for f in found
    )


def test_tls_files_resolved(tmp_path: Path) -> None:
    for n in ("ca.pem", "c.pem", "k.pem", "province.pub"):
        (tmp_path / n).write_text("x")
    text = GOOD.replace("mqtt://", "mqtts://").replace("allow_plaintext = true", "")
    text = text.replace(
        "[sync]",
        '[sync]\nca_file = "ca.pem"\ncert_file = "c.pem"\nkey_file = "k.pem"\n'
        'province_public_key = "province.pub"',
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.sync.ca_file == tmp_path / "ca.pem"
    assert cfg.sync.province_public_key == tmp_path / "province.pub"


def test_the_root_key_is_separate_from_the_signing_key(tmp_path: Path) -> None:
    from kiosk.sync.signing import generate_keypair, public_key_pem

    signing, root = generate_keypair()[1], generate_keypair()[1]
    (tmp_path / "province.pub").write_bytes(public_key_pem(signing))
    (tmp_path / "root.pem").write_bytes(public_key_pem(root))
    (tmp_path / "same.pem").write_bytes(public_key_pem(signing))
    (tmp_path / "junk.pem").write_text("x")

    def with_root(name: str) -> str:
        return GOOD.replace(
            "[sync]", f'[sync]\nprovince_public_key = "province.pub"\nprovince_root_key = "{name}"'
        )

    cfg = load_config(write(tmp_path, with_root("root.pem")))
    assert cfg.sync.province_root_key == tmp_path / "root.pem"
    with pytest.raises(ConfigError, match="root key must be separate"):
        load_config(write(tmp_path, with_root("same.pem")))
    with pytest.raises(ConfigError, match=r"province_root_key.*not a PEM key"):
        load_config(write(tmp_path, with_root("junk.pem")))
    with pytest.raises(ConfigError, match=r"province_root_key.*file does not exist"):
        load_config(write(tmp_path, with_root("absent.pem")))


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[identity\nkiosk_id = 1"))
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"line 1, column 1 is not UTF-8 text \(byte 0xff\)"):
        load_config(p)


def test_resolve_config_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIOSK_CONFIG", raising=False)
    assert resolve_config_path(None) == DEFAULT_CONFIG_PATH
    monkeypatch.setenv("KIOSK_CONFIG", "/tmp/env.toml")
    assert resolve_config_path(None) == Path("/tmp/env.toml")
    assert resolve_config_path("/tmp/cli.toml") == Path("/tmp/cli.toml")


def test_every_key_is_documented() -> None:
    from dataclasses import fields

    from kiosk.config import SECTIONS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for section, cls in SECTIONS.items():
        assert f"## [{section}]" in doc
        for f in fields(cls):
            assert f"`{f.name}`" in doc, f"{section}.{f.name} missing from docs/configuration.md"


def test_protocol_vmc_is_accepted_with_its_settings(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            with_section(
                "hardware",
                'protocol = "vmc"\nbaud = 57600\nvmc_selection_offset = 11\nvmc_command = "drive"',
            ),
        )
    )
    assert cfg.hardware.protocol == "vmc"
    assert cfg.hardware.vmc_selection_offset == 11
    assert cfg.hardware.vmc_command == "drive"
    assert load_config(write(tmp_path, GOOD)).hardware.protocol == "kiosk"


def test_protocol_vmc_refuses_what_a_vmc_cannot_be(tmp_path: Path) -> None:
    found = issues_of(
        tmp_path,
        with_section("hardware", 'protocol = "vmc"\ncabinet = "locker"\nboards = [0, 1]'),
    )
    text = "\n".join(found)
    assert "hardware.baud = 115200: a VMC speaks 57600 baud" in text
    assert "hardware.cabinet = 'locker': protocol vmc drives spiral" in text
    assert "hardware.boards = [0, 1]: protocol vmc has one VMC per serial port" in text
    bad = issues_of(tmp_path, with_section("hardware", 'protocol = "mdb"\nvmc_command = "x"'))
    assert any("hardware.protocol = 'mdb': must be one of kiosk, vmc" in i for i in bad)
    assert any("hardware.vmc_command = 'x': must be one of select, drive" in i for i in bad)


def test_technicians(tmp_path: Path) -> None:
    from kiosk.config import technicians
    from kiosk.core.pin import hash_pin

    h1, h2 = hash_pin("802461", iterations=10), hash_pin("135792", iterations=10)
    text = with_section("ui", f'service_pin_hash = "{h2}"') + (
        f'\n[[service.technicians]]\nid = "T0042"\npin_hash = "{h1}"\n'
    )
    cfg = load_config(write(tmp_path, text))
    assert [(t.id, t.pin_hash) for t in technicians(cfg)] == [("T0042", h1), ("default", h2)]


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ('id = "T 1"\npin_hash = "{h}"', r"technician 1: id 'T 1' must be 1-32 letters"),
        ('id = "T1"\npin_hash = "2468"', r"technician 1 \(T1\): pin_hash must be pbkdf2_sha256"),
        ('id = "T1"', r"technician 1: needs exactly the keys id and pin_hash"),
        (
            'id = "T1"\npin_hash = "{h}"\n[[service.technicians]]\nid = "T1"\npin_hash = "{h}"',
            r"technician 2: id T1 is listed twice",
        ),
    ],
)
def test_bad_technicians(tmp_path: Path, entries: str, expected: str) -> None:
    from kiosk.core.pin import hash_pin

    text = (
        GOOD + "\n[[service.technicians]]\n" + entries.format(h=hash_pin("802461", iterations=10))
    )
    found = issues_of(tmp_path, text)
    assert any(re.search(r"service\.technicians = .*" + expected, f) for f in found), found


def test_legacy_id_clash(tmp_path: Path) -> None:
    from kiosk.core.pin import hash_pin

    h = hash_pin("802461", iterations=10)
    text = with_section("ui", f'service_pin_hash = "{h}"') + (
        f'\n[[service.technicians]]\nid = "default"\npin_hash = "{h}"\n'
    )
    found = issues_of(tmp_path, text)
    assert any("id default is taken by ui.service_pin_hash" in f for f in found), found


def test_field_config_refuses_the_demo_pin(tmp_path: Path) -> None:
    """The demo PIN (any salt) is refused with a real province (a broker not on this machine,
    kiosk.config.is_field_config), named."""
    from kiosk.core.pin import DEMO_PIN, DEMO_PIN_HASH, hash_pin

    (tmp_path / "ca.pem").write_text("x")
    field = GOOD.replace("mqtt://127.0.0.1:1883", "mqtts://broker.province.example:8883")
    field = field.replace("[sync]", '[sync]\nca_file = "ca.pem"')
    mine = hash_pin("802461", iterations=10)
    demo = hash_pin(DEMO_PIN, iterations=20)
    text = with_section("ui", f'service_pin_hash = "{demo}"') + "".join(
        f'\n[[service.technicians]]\nid = "T{i}"\npin_hash = "{h}"\n'
        for i, h in enumerate((mine, DEMO_PIN_HASH, hash_pin(DEMO_PIN, iterations=10)), 1)
    )
    found = "\n".join(issues_of(tmp_path, text.replace(GOOD, field)))
    assert "service.technicians[1]" not in found
    assert "service.technicians[2].pin_hash = '(technician T2)': is the published demo PIN" in found
    assert "service.technicians[3].pin_hash = '(technician T3)'" in found
    assert "ui.service_pin_hash = '(technician default)': is the published demo PIN" in found
    load_config(write(tmp_path, text))  # the demo (a broker on 127.0.0.1) accepts it


def test_demo_config_has_the_demo_technician() -> None:
    from kiosk.config import technicians
    from kiosk.core.pin import DEMO_PIN, verify_pin

    (tech,) = technicians(load_config(demo_config_path()))
    assert verify_pin(DEMO_PIN, tech.pin_hash)


def test_modbus_and_chilled_sections(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.modbus.port == "" and not cfg.modbus.locks and cfg.modbus.sensor_unit == 0
    assert cfg.chilled.too_warm_for_s == 300
    text = with_section("modbus", 'port = "/dev/ttyUSB1"\nsensor_unit = 10\nbaud = 19200')
    cfg = load_config(write(tmp_path, text + "\n[chilled]\nback_for_s = 600\n"))
    assert (cfg.modbus.sensor_unit, cfg.modbus.baud, cfg.chilled.back_for_s) == (10, 19200, 600)
    issues = issues_of(tmp_path, with_section("modbus", "locks = true\nsensor_unit = 300"))
    assert any("modbus.sensor_unit = 300" in i for i in issues)
    issues = issues_of(tmp_path, with_section("modbus", "locks = true"))
    assert any("modbus.port" in i and "RS-485" in i for i in issues)
    assert any("modbus.locks" in i and "locker" in i for i in issues)
    assert issues_of(tmp_path, with_section("modbus", "baud = 1000"))

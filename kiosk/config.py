"""Typed kiosk configuration: one TOML file, validated all at once.

Owns: the config schema (sections, keys, types, allowed values), loading and validation. Every
problem is reported together, each naming the file, the key, the bad value and what is allowed;
unknown keys are errors, because a typo silently ignored is a kiosk misconfigured in the field.
Never logs secrets: only paths to secret files live here, never their contents.

Relative paths in the file are resolved against the directory holding the file; `~` is expanded.

Problems are data: a `Problem` is a message key of kiosk.config_text and its fields, rendered
when shown, in the language kiosk.textfile.pick_lang chooses (`str(issue)`: the user's language;
`str(issue.problem)`: English, for logs and the province). Each issue carries the line of its key
when the file's text shows it (kiosk.config_text.key_lines says how it is found).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kiosk.config_text import CONFIG_MESSAGES, key_lines, locate
from kiosk.core.planogram import Planogram, SlotKind
from kiosk.textfile import TextFileError, read_text, say, say_in, toml_error_words, worded

__all__ = [
    "BOARD_PROTOCOLS",
    "DEFAULT_CONFIG_PATH",
    "ENV_CONFIG",
    "BoardConfig",
    "ChilledConfig",
    "ConfigError",
    "ConfigIssue",
    "KioskConfig",
    "ModbusConfig",
    "Problem",
    "ServiceConfig",
    "SiteType",
    "TechnicianConfig",
    "board_addresses",
    "demo_config_path",
    "device_secret_problems",
    "field_problems",
    "is_field_config",
    "load_config",
    "planogram_board_issues",
    "refuse_in_field",
    "resolve_config_path",
    "technicians",
]

DEFAULT_CONFIG_PATH = Path("/etc/kiosk/kiosk.toml")
ENV_CONFIG = "KIOSK_CONFIG"

KIOSK_ID_RE = re.compile(r"^AH-(?P<area>\d{6})-(?P<serial>[0-9A-Z]{4,8})$")
KIOSK_ID_FORMAT = "AH-<6-digit GB/T 2260 area code>-<4 to 8 digits or capital letters>"
TECHNICIAN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
PIN_HASH_RE = re.compile(r"^pbkdf2_sha256\$\d+\$[0-9a-f]+\$[0-9a-f]+$")
PIN_HASH_FORMAT = "pbkdf2_sha256$<iterations>$<salt hex>$<hash hex> (kiosk-provision makes it)"
#: The technician id a single `ui.service_pin_hash` (older configs) logs in as.
LEGACY_TECHNICIAN_ID = "default"


class SiteType(StrEnum):
    """Deployment categories of the province's poverty-alleviation cabinets."""

    AGENCY = "agency"  # 机关
    DEVELOPMENT_ZONE = "development_zone"  # 开发区
    SOE = "soe"  # 国企
    PRIVATE_ENTERPRISE = "private_enterprise"  # 民企
    COMMUNITY = "community"  # 社区
    SCHOOL = "school"  # 高校 / 学校
    HOSPITAL = "hospital"  # 医院
    STATION = "station"  # 车站
    SCENIC_SPOT = "scenic_spot"  # 景区景点
    SUPERMARKET = "supermarket"  # 商超
    SERVICE_AREA = "service_area"  # 高速服务区
    HOTEL = "hotel"  # 酒店


# --- schema ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityConfig:
    kiosk_id: str
    site_name: str
    site_type: SiteType
    area_code: str
    address: str = ""
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True)
class HardwareConfig:
    driver: str = "serial"  # serial: our protocol over serial_for_url
    protocol: str = "kiosk"  # kiosk: docs/serial-protocol.md; vmc: docs/boards/vmc.md
    port: str = "/dev/ttyUSB0"  # anything serial.serial_for_url opens
    baud: int = 115200
    cabinet: str = "spiral"  # spiral | locker
    boards: tuple[int, ...] = (0,)  # board addresses on the bus: 0 main, 1..15 expansion
    rows: int = 6
    cols: int = 10
    default_capacity: int = 10
    chilled: bool = False
    max_temperature_c: float = 8.0  # chilled compartment alarm threshold
    vmc_selection_offset: int = 1  # protocol vmc: selection number = planogram address + this
    vmc_command: str = "select"  # protocol vmc: select (0x03) | drive (0x06, drop sensor on)


@dataclass(frozen=True)
class ModbusConfig:
    """The cabinet's Modbus RTU line (RS-485): lock boards and a temperature sensor
    (docs/boards/modbus.md). Register numbers are protocol addresses, 0-based."""

    port: str = ""  # "": no Modbus line; else anything pymodbus's serial client opens
    baud: int = 9600
    parity: str = "N"  # N | E | O
    stopbits: int = 1
    timeout_s: float = 0.3  # per try
    retries: int = 2  # extra tries after a lost or corrupted answer
    locks: bool = False  # true: the locker cabinet's doors are Modbus lock boards
    lock_unit_base: int = 1  # planogram board b is Modbus unit lock_unit_base + b
    locks_per_board: int = 16
    lock_coil_base: int = 0  # coil of lock 0 (write 1 = release)
    door_input_base: int = 0  # discrete input of door 0
    door_open_value: int = 1  # the door input reads this when the door is open (1 or 0)
    door_poll_s: float = 0.2
    sensor_unit: int = 0  # 0: no sensor; else its Modbus unit (1..247)
    temperature_register: int = 1  # input register, value x temperature_scale = °C
    humidity_register: int = 2  # input register, value x humidity_scale = %RH; -1: none
    temperature_scale: float = 0.1
    humidity_scale: float = 0.1
    temperature_signed: bool = True
    sensor_every_s: float = 5.0


#: `[[board]] protocol` values: our boards (the kiosk polls, docs/serial-protocol.md), a VMC
#: (it polls the kiosk, docs/boards/vmc.md), Modbus RTU lock boards (docs/boards/modbus.md).
BOARD_PROTOCOLS = ("kiosk", "vmc", "modbus-locks")


@dataclass(frozen=True)
class BoardConfig:
    """One `[[board]]` table: the protocol, port and settings of planogram board `address`.
    Every key left out is resolved at load time from [hardware] or [modbus] (documented in
    docs/configuration.md), so the values here are the ones in force."""

    address: int  # the planogram's board number, 0..15
    protocol: str  # one of BOARD_PROTOCOLS
    port: str  # kiosk, vmc: hardware.port; modbus-locks: modbus.port
    baud: int  # kiosk: hardware.baud; vmc: 57600; modbus-locks: modbus.baud
    vmc_selection_offset: int = 1  # vmc: hardware.vmc_selection_offset
    vmc_command: str = "select"  # vmc: hardware.vmc_command
    unit: int = 1  # modbus-locks: modbus.lock_unit_base + address
    locks_per_board: int = 16  # modbus-locks: the [modbus] key of that name, and the next ones
    lock_coil_base: int = 0
    door_input_base: int = 0
    door_open_value: int = 1
    door_poll_s: float = 0.2


#: The keys a `[[board]]` table may have besides address, protocol, port and baud, per protocol,
#: each with the [hardware] or [modbus] key that gives its default and its rule.
BOARD_KEYS: dict[str, dict[str, str]] = {
    "kiosk": {},
    "vmc": {
        "vmc_selection_offset": "hardware.vmc_selection_offset",
        "vmc_command": "hardware.vmc_command",
    },
    "modbus-locks": {
        "unit": "modbus.lock_unit_base",
        "locks_per_board": "modbus.locks_per_board",
        "lock_coil_base": "modbus.lock_coil_base",
        "door_input_base": "modbus.door_input_base",
        "door_open_value": "modbus.door_open_value",
        "door_poll_s": "modbus.door_poll_s",
    },
}


@dataclass(frozen=True)
class ChilledConfig:
    """Chilled goods (docs/sales.md, "Chilled goods"): products with `chilled_max_c`."""

    too_warm_for_s: int = 300  # above a product's limit this long: it stops selling
    back_for_s: int = 300  # at or below limit - hysteresis_c this long: it sells again
    hysteresis_c: float = 0.5
    sensor_silent_after_s: int = 60  # no reading this long counts as too warm


@dataclass(frozen=True)
class SyncConfig:
    broker_url: str = "mqtts://127.0.0.1:8883"
    mqtt_version: str = "5"  # "5" or "3.1.1"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    province_public_key: Path | None = None
    province_root_key: Path | None = None  # signs key sets only (kiosk.sync.keyset)
    allow_plaintext: bool = False  # only for the demo and tests
    bootstrap_url: str = ""  # registration listener (server TLS only); "" = broker_url
    # SHA-256 of the CA that signs this kiosk's certificate at registration, pinned at
    # provisioning; "" = the CA certificate(s) in ca_file (kiosk-provision register)
    client_ca_fingerprint: str = ""
    keepalive_s: int = 60
    # at most one SYNC_REJECTED alarm per (topic kind, reason) per this many seconds
    rejection_alarm_every_s: int = 600
    # resends of records the province has not acknowledged (docs/sync.md, "Resends"): overdue
    # after ack_timeout_s; on one connection in bounded rounds: while the province is silent a
    # probe of resend_probe records, the gap doubling from ack_timeout_s to resend_cap_s; once
    # it acks, up to resend_window records an acked one overtook, every ack_timeout_s
    ack_timeout_s: int = 30
    resend_cap_s: int = 600
    resend_window: int = 100
    resend_probe: int = 10


@dataclass(frozen=True)
class PaymentsConfig:
    pay_url_base: str = "https://pay.example.invalid/p"
    device_secret_file: Path | None = None
    payment_window_s: int = 120
    max_extensions: int = 10
    max_cart_items: int = 5
    status_query_after_s: int = 60


@dataclass(frozen=True)
class UiConfig:
    width: int = 1080
    height: int = 1920
    orientation: str = "portrait"  # portrait | landscape
    language: str = "zh"  # zh | en
    font_path: Path | None = None  # None: search common CJK fonts
    fullscreen: bool = True
    idle_timeout_s: int = 60
    dim_after_s: int = 300
    service_pin_hash: str = ""  # pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>
    service_phone: str = "400-000-0000"


@dataclass(frozen=True)
class TechnicianConfig:
    """One technician who may open the service menu: the PIN identifies them."""

    id: str
    pin_hash: str  # pbkdf2_sha256$<iterations>$<salt hex>$<hash hex> (kiosk-provision pin)


@dataclass(frozen=True)
class ServiceConfig:
    technicians: tuple[TechnicianConfig, ...] = ()


@dataclass(frozen=True)
class StoreConfig:
    data_dir: Path = Path("/var/lib/kiosk")
    min_free_mb: int = 50


@dataclass(frozen=True)
class UpdateConfig:
    """Software updates (docs/deploy.md, "Releases and updates")."""

    # the release key's public half (PEM, Ed25519), pinned at provisioning; not the province's
    # message key. None: this cabinet installs no release.
    release_public_key: Path | None = None
    root: Path = Path("/opt/kiosk")  # versions/, current, state.json, backups/
    health_timeout_s: int = 120  # a new version must be ready and healthy within this
    max_boots: int = 3  # trial starts before a crash-looping new version is rolled back
    min_free_mb: int = 200  # left free on the update root's disk after an install


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "kv"  # kv | json


@dataclass(frozen=True)
class KioskConfig:
    source: Path
    identity: IdentityConfig
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    modbus: ModbusConfig = field(default_factory=ModbusConfig)
    chilled: ChilledConfig = field(default_factory=ChilledConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    # `[[board]]`: a protocol per board; () = [hardware] protocol / [modbus] locks for all
    boards: tuple[BoardConfig, ...] = ()
    # the line of each key in the file (kiosk.config_text.key_lines), for the problems found
    # after loading (device secret, field config, planogram)
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)


SECTIONS: dict[str, type[Any]] = {
    "identity": IdentityConfig,
    "hardware": HardwareConfig,
    "modbus": ModbusConfig,
    "chilled": ChilledConfig,
    "sync": SyncConfig,
    "payments": PaymentsConfig,
    "ui": UiConfig,
    "service": ServiceConfig,
    "store": StoreConfig,
    "logging": LoggingConfig,
    "update": UpdateConfig,
}
REQUIRED_SECTIONS = ("identity",)


# --- problems -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """What is wrong: a message key (kiosk.config_text.CONFIG_MESSAGES, or kiosk.textfile's
    for a file that cannot be read) and the fields that fill it in."""

    key: str
    fields: Mapping[str, object] = field(default_factory=dict)

    def text(self, lang: str | None = None) -> str:
        """In `lang` (default: kiosk.textfile.pick_lang)."""
        fields = worded(self.fields, lang)  # an OSError: its reason in the user's words
        if self.key in CONFIG_MESSAGES:
            return say_in(CONFIG_MESSAGES, self.key, lang, **fields)
        return say(self.key, lang, **fields)

    def __str__(self) -> str:  # logs and the province's rejection records: English
        return self.text("en")


def _p(key: str, /, **fields: object) -> Problem:
    return Problem(key, fields)


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    key: str
    value: object
    problem: Problem
    line: int | None = None  # of `key` in the file, when known

    def message(self, lang: str | None = None) -> str:
        """The whole problem in `lang` (default: kiosk.textfile.pick_lang): file, line, key,
        the value as written, and what is allowed."""
        problem = self.problem.text(lang)
        if self.key == "(file)":  # the problem names the file and says what to do
            return problem
        if self.key == "(syntax)":
            return say_in(CONFIG_MESSAGES, "issue_file", lang, file=self.file, problem=problem)
        missing = self.value is _MISSING
        shown = say_in(CONFIG_MESSAGES, "missing_value", lang) if missing else repr(self.value)
        layout = "issue" if self.line is None else "issue_at"
        fields = {"file": self.file, "line": self.line, "key": self.key, "value": shown}
        return say_in(CONFIG_MESSAGES, layout, lang, problem=problem, **fields)

    def __str__(self) -> str:  # the person at the terminal: their language
        return self.message()


class ConfigError(Exception):
    """The config could not be used; `issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__(issues)

    def __str__(self) -> str:  # rendered when shown, in the user's language
        return "\n".join(str(i) for i in self.issues)


def _located(issues: list[ConfigIssue], lines: Mapping[str, int]) -> list[ConfigIssue]:
    """`issues` with the line of each key set where the file shows it (config_text.locate)."""
    return [i if i.line is not None else replace(i, line=locate(lines, i.key)) for i in issues]


_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "(missing)"})()


# --- per-key rules --------------------------------------------------------------------------

Rule = Callable[[Any], Problem | None]  # returns what is wrong, or None when fine


def _choice(*allowed: str) -> Rule:
    return lambda v: None if v in allowed else _p("one_of", allowed=", ".join(allowed))


def _range(lo: float, hi: float) -> Rule:
    return lambda v: None if lo <= v <= hi else _p("range", lo=lo, hi=hi)


def _regex(rx: str, message: str) -> Rule:
    """`message`: the config_text key saying what the value must look like."""
    pat = re.compile(rx)
    return lambda v: None if pat.fullmatch(v) else _p(message)


def _check(ok: Callable[[Any], bool], message: str) -> Rule:
    return lambda v: None if ok(v) else _p(message)


def _url(*schemes: str) -> Rule:
    starts = [s + "://" for s in schemes]
    wanted = (
        _p("url_one", a=starts[0]) if len(starts) == 1 else _p("url_two", a=starts[0], b=starts[1])
    )

    def check(v: str) -> Problem | None:
        m = re.fullmatch(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<rest>[^\s/]+)(?P<path>/\S*)?", v)
        return wanted if not m or m["scheme"] not in schemes else None

    return check


RULES: dict[str, Rule] = {
    "identity.kiosk_id": _regex(KIOSK_ID_RE.pattern[1:-1], "kiosk_id"),
    "identity.site_name": _check(lambda v: bool(v.strip()), "not_empty"),
    "identity.area_code": _regex(r"34\d{4}", "area_code"),
    "identity.latitude": _range(-90, 90),
    "identity.longitude": _range(-180, 180),
    "hardware.driver": _choice("serial"),
    "hardware.protocol": _choice("kiosk", "vmc"),
    "hardware.vmc_selection_offset": _range(0, 65535),
    "hardware.vmc_command": _choice("select", "drive"),
    "hardware.port": _check(lambda v: bool(v.strip()), "port_empty"),
    "hardware.baud": _choice(*(str(b) for b in (9600, 19200, 38400, 57600, 115200, 230400))),
    "hardware.cabinet": _choice("spiral", "locker"),
    "hardware.rows": _range(1, 20),
    "hardware.cols": _range(1, 20),
    "hardware.default_capacity": _range(1, 50),
    "hardware.max_temperature_c": _range(-30, 30),
    "modbus.baud": _choice(
        *(str(b) for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200))
    ),
    "modbus.parity": _choice("N", "E", "O"),
    "modbus.stopbits": _range(1, 2),
    "modbus.timeout_s": _range(0.02, 5),
    "modbus.retries": _range(0, 10),
    "modbus.lock_unit_base": _range(1, 247),
    "modbus.locks_per_board": _range(1, 256),
    "modbus.lock_coil_base": _range(0, 65535),
    "modbus.door_input_base": _range(0, 65535),
    "modbus.door_open_value": _range(0, 1),
    "modbus.door_poll_s": _range(0.05, 2),
    "modbus.sensor_unit": _range(0, 247),
    "modbus.temperature_register": _range(0, 65535),
    "modbus.humidity_register": _range(-1, 65535),
    "modbus.temperature_scale": _check(lambda v: 0 < v <= 10, "above_0_max_10"),
    "modbus.humidity_scale": _check(lambda v: 0 < v <= 10, "above_0_max_10"),
    "modbus.sensor_every_s": _range(0.5, 600),
    "board.address": _range(0, 15),
    "board.protocol": _choice(*BOARD_PROTOCOLS),
    "board.port": _check(lambda v: bool(v.strip()), "port_empty"),
    "chilled.too_warm_for_s": _range(0, 86400),
    "chilled.back_for_s": _range(0, 86400),
    "chilled.hysteresis_c": _range(0, 10),
    "chilled.sensor_silent_after_s": _range(5, 3600),
    "sync.broker_url": _url("mqtt", "mqtts"),
    "sync.mqtt_version": _choice("5", "3.1.1"),
    "sync.keepalive_s": _range(5, 1200),
    "sync.rejection_alarm_every_s": _range(1, 86400),
    "sync.ack_timeout_s": _range(5, 3600),
    "sync.resend_cap_s": _range(30, 86400),
    "sync.resend_window": _range(1, 100_000),
    "sync.resend_probe": _range(1, 100_000),
    "sync.bootstrap_url": lambda v: None if v == "" else _url("mqtts")(v),
    "sync.client_ca_fingerprint": _regex(
        r"((?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}|[0-9A-Fa-f]{64})?", "fingerprint"
    ),
    "payments.pay_url_base": _url("https", "http"),
    "payments.payment_window_s": _range(30, 900),
    "payments.max_extensions": _range(0, 10),
    "payments.max_cart_items": _range(1, 20),
    "payments.status_query_after_s": _range(5, 900),
    "ui.width": _range(320, 7680),
    "ui.height": _range(240, 7680),
    "ui.orientation": _choice("portrait", "landscape"),
    "ui.language": _choice("zh", "en"),
    "ui.idle_timeout_s": _range(15, 3600),
    "ui.dim_after_s": _range(10, 86400),
    "ui.service_pin_hash": _regex(f"({PIN_HASH_RE.pattern[1:-1]})?", "pin_hash"),
    "store.min_free_mb": _range(1, 100_000),
    "update.health_timeout_s": _range(10, 3600),
    "update.max_boots": _range(1, 20),
    "update.min_free_mb": _range(0, 100_000),
    "logging.level": _choice("debug", "info", "warning", "error"),
    "logging.format": _choice("kv", "json"),
}


# --- loading --------------------------------------------------------------------------------


def resolve_config_path(cli_path: str | os.PathLike[str] | None = None) -> Path:
    """`--config` beats $KIOSK_CONFIG beats /etc/kiosk/kiosk.toml."""
    if cli_path:
        return Path(cli_path)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    return DEFAULT_CONFIG_PATH


def demo_config_path() -> Path:
    """The demo config shipped with the package; it works out of the box."""
    return Path(__file__).parent / "data" / "demo.toml"


def load_config(path: str | os.PathLike[str]) -> KioskConfig:
    """Load and validate; raise ConfigError listing every problem."""
    p = Path(path)
    name = str(p)
    try:  # UTF-8, with or without the BOM Notepad writes (TOML is UTF-8 by definition)
        text = read_text(p)
    except TextFileError as e:
        problem = (
            _p("config_not_found", file=name) if e.key == "not_found" else _p(e.key, **e.fields)
        )
        raise ConfigError([ConfigIssue(name, "(file)", _MISSING, problem)]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # the parser's own words, wrapped in the user's (kiosk.textfile.toml_error_words)
        syntax = Problem(*toml_error_words(e, text))
        raise ConfigError([ConfigIssue(name, "(syntax)", _MISSING, syntax)]) from None
    return parse_config(raw, source=p, lines=key_lines(text))


def parse_config(
    raw: Mapping[str, Any], source: Path, lines: Mapping[str, int] | None = None
) -> KioskConfig:
    """Validate `raw` (the parsed TOML of `source`); `lines`: where each key is in its text
    (kiosk.config_text.key_lines), said with each problem."""
    name = str(source)
    base = source.parent
    issues: list[ConfigIssue] = []
    built: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "board":
            continue  # [[board]] tables: _board_tables, once [hardware] and [modbus] are known
        if key not in SECTIONS:
            allowed = ", ".join((*SECTIONS, "[[board]]"))
            issues.append(ConfigIssue(name, key, value, _p("unknown_section", allowed=allowed)))
        elif not isinstance(value, dict):
            issues.append(ConfigIssue(name, key, value, _p("not_table")))
    for section, cls in SECTIONS.items():
        table = raw.get(section, _MISSING)
        if table is _MISSING:
            if section == "identity":  # an empty file, or not a kiosk config at all
                said = Problem("config_no_identity" if raw else "config_empty", {"file": name})
                issues.append(ConfigIssue(name, "(file)", _MISSING, said))
            elif section in REQUIRED_SECTIONS:
                issues.append(ConfigIssue(name, f"[{section}]", _MISSING, _p("section_required")))
            continue
        if not isinstance(table, dict):
            continue
        built[section] = _build_section(name, base, section, cls, table, issues)
    if "board" in raw:
        built["boards"] = _board_tables(
            name,
            raw["board"],
            built.get("hardware") or HardwareConfig(),
            built.get("modbus") or ModbusConfig(),
            issues,
        )
    cfg: KioskConfig | None = None
    if not issues:
        cfg = KioskConfig(source=source, **built, key_lines=dict(lines or {}))
        issues.extend(_cross_checks(name, cfg))
    if issues or cfg is None:
        raise ConfigError(_located(issues, lines or {}))
    return cfg


def _build_section(
    name: str,
    base: Path,
    section: str,
    cls: type[Any],
    table: dict[str, Any],
    issues: list[ConfigIssue],
) -> Any:
    known = {f.name: f for f in fields(cls)}
    for key, value in table.items():
        if key not in known:
            issues.append(
                ConfigIssue(
                    name,
                    f"{section}.{key}",
                    value,
                    _p("unknown_key", section=section, allowed=", ".join(known)),
                )
            )
    kwargs: dict[str, Any] = {}
    for fname, f in known.items():
        dotted = f"{section}.{fname}"
        has_default = not (f.default is MISSING and f.default_factory is MISSING)
        if fname not in table:
            if not has_default:
                issues.append(ConfigIssue(name, dotted, _MISSING, _p("key_required")))
            continue
        value = table[fname]
        converted, problem = _convert(f.type, value, base)
        if problem is None:
            rule = RULES.get(dotted)
            checked = str(converted) if dotted in ("hardware.baud", "modbus.baud") else converted
            problem = rule(checked) if rule is not None else None
        if problem is not None:
            issues.append(ConfigIssue(name, dotted, value, problem))
            continue
        kwargs[fname] = converted
    try:
        return cls(**kwargs)
    except TypeError:
        return None  # a required key is missing; already reported


def _convert(type_name: Any, value: Any, base: Path) -> tuple[Any, Problem | None]:
    t = str(type_name)
    optional = t.endswith("| None")
    t = t.removesuffix(" | None")
    if t == "str" or t == "SiteType":
        if not isinstance(value, str):
            return None, _p("not_string")
        if t == "SiteType":
            try:
                return SiteType(value), None
            except ValueError:
                return None, _p("one_of", allowed=", ".join(s.value for s in SiteType))
        return value, None
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return None, _p("not_int")
        return value, None
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, _p("not_number")
        return float(value), None
    if t == "bool":
        if not isinstance(value, bool):
            return None, _p("not_bool")
        return value, None
    if t == "tuple[int, ...]":
        if not isinstance(value, list) or not value:
            return None, _p("boards_empty")
        if any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 15 for v in value):
            return None, _p("boards_range")
        if len(set(value)) != len(value):
            return None, _p("boards_twice")
        return tuple(value), None
    if t == "tuple[TechnicianConfig, ...]":
        return _technicians(value)
    if t == "Path":
        if not isinstance(value, str):
            return None, _p("not_path")
        if optional and value == "":
            return None, None
        p = Path(value).expanduser()
        return (p if p.is_absolute() else base / p), None
    raise AssertionError(f"config schema uses unsupported type {t}")


def _technicians(value: Any) -> tuple[Any, Problem | None]:
    """`[[service.technicians]]` tables: id and pin_hash each, ids unique."""
    if not isinstance(value, list):
        return None, _p("techs_not_list")
    out: list[TechnicianConfig] = []
    for i, t in enumerate(value, 1):
        if not isinstance(t, dict) or set(t) != {"id", "pin_hash"}:
            return None, _p("tech_keys", i=i)
        tid, h = t["id"], t["pin_hash"]
        if not isinstance(tid, str) or not TECHNICIAN_ID_RE.match(tid):
            return None, _p("tech_id", i=i, tid=tid)
        if not isinstance(h, str) or not PIN_HASH_RE.match(h):
            return None, _p("tech_pin_hash", i=i, tid=tid)
        if any(o.id == tid for o in out):
            return None, _p("tech_twice", i=i, tid=tid)
        out.append(TechnicianConfig(tid, h))
    return tuple(out), None


def technicians(cfg: KioskConfig) -> tuple[TechnicianConfig, ...]:
    """Who may open the service menu: `[[service.technicians]]`, and an older config's single
    `ui.service_pin_hash` as technician `default` (LEGACY_TECHNICIAN_ID)."""
    legacy = legacy_technicians(cfg.ui)
    return cfg.service.technicians + legacy


def legacy_technicians(ui: UiConfig) -> tuple[TechnicianConfig, ...]:
    if not ui.service_pin_hash:
        return ()
    return (TechnicianConfig(LEGACY_TECHNICIAN_ID, ui.service_pin_hash),)


# --- [[board]]: a protocol per board -----------------------------------------------------------


def _board_tables(
    name: str, value: Any, hw: HardwareConfig, m: ModbusConfig, issues: list[ConfigIssue]
) -> tuple[BoardConfig, ...]:
    """Each `[[board]]` table, its left-out keys resolved from [hardware] / [modbus]."""
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        issues.append(
            ConfigIssue(
                name,
                "board",
                value,
                _p("board_not_tables"),
            )
        )
        return ()
    out: list[BoardConfig] = []
    for i, table in enumerate(value, 1):
        board = _board_table(name, f"board[{i}]", table, hw, m, issues)
        if board is not None:
            out.append(board)
    return tuple(out)


def _board_table(
    name: str,
    where: str,
    table: dict[str, Any],
    hw: HardwareConfig,
    m: ModbusConfig,
    issues: list[ConfigIssue],
) -> BoardConfig | None:
    head: dict[str, Any] = {}
    for key, type_name in (("address", "int"), ("protocol", "str")):
        got = (
            ConfigIssue(name, f"{where}.{key}", _MISSING, _p("key_required"))
            if key not in table
            else _board_value(name, f"{where}.{key}", type_name, f"board.{key}", table[key])
        )
        if isinstance(got, ConfigIssue):
            issues.append(got)
        else:
            head[key] = got
    if len(head) < 2:
        return None
    protocol: str = head["protocol"]
    address = int(head["address"])
    defaults = _board_defaults(protocol, address, hw, m)
    extra = BOARD_KEYS[protocol]
    allowed = ("address", "protocol", "port", "baud", *extra)
    types = {f.name: str(f.type) for f in fields(BoardConfig)}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        dotted = f"{where}.{key}"
        if key not in allowed:
            problem = _p("board_unknown_key", protocol=protocol, allowed=", ".join(allowed))
            issues.append(ConfigIssue(name, dotted, raw, problem))
        elif key not in ("address", "protocol"):
            rule = extra.get(key) or _board_baud_rule(protocol, key)
            got = _board_value(name, dotted, types[key], rule, raw)
            if isinstance(got, ConfigIssue):
                issues.append(got)
            else:
                values[key] = got
    resolved = {**defaults, **values}
    if not str(resolved["port"]).strip():
        issues.append(
            ConfigIssue(
                name,
                f"{where}.port",
                _MISSING,
                _p("board_port_required"),
            )
        )
        return None
    return BoardConfig(address=address, protocol=protocol, **resolved)


def _board_defaults(protocol: str, address: int, hw: HardwareConfig, m: ModbusConfig) -> Any:
    if protocol == "kiosk":
        return {"port": hw.port, "baud": hw.baud}
    if protocol == "vmc":
        return {
            "port": hw.port,
            "baud": 57600,
            "vmc_selection_offset": hw.vmc_selection_offset,
            "vmc_command": hw.vmc_command,
        }
    return {
        "port": m.port,
        "baud": m.baud,
        "unit": min(247, m.lock_unit_base + address),
        "locks_per_board": m.locks_per_board,
        "lock_coil_base": m.lock_coil_base,
        "door_input_base": m.door_input_base,
        "door_open_value": m.door_open_value,
        "door_poll_s": m.door_poll_s,
    }


def _board_baud_rule(protocol: str, key: str) -> str:
    if key == "baud":
        return "modbus.baud" if protocol == "modbus-locks" else "hardware.baud"
    return f"board.{key}"


def _board_value(name: str, dotted: str, type_name: str, rule_key: str, raw: Any) -> Any:
    """The converted value, or a ConfigIssue."""
    converted, problem = _convert(type_name, raw, Path("."))
    if problem is None:
        rule = RULES.get(rule_key)
        checked = str(converted) if rule_key.endswith(".baud") else converted
        problem = rule(checked) if rule is not None else None
    return converted if problem is None else ConfigIssue(name, dotted, raw, problem)


def board_addresses(cfg: KioskConfig) -> tuple[int, ...]:
    """The planogram board numbers the config knows: the `[[board]]` addresses, or (without
    [[board]]) `hardware.boards`."""
    if cfg.boards:
        return tuple(sorted(b.address for b in cfg.boards))
    return cfg.hardware.boards


def planogram_board_issues(cfg: KioskConfig, planogram: Planogram) -> list[ConfigIssue]:
    """With [[board]]: every planogram board has a table, whose protocol drives its slots'
    kind (a VMC spiral/belt slots, Modbus lock boards locker doors). Empty without [[board]]."""
    if not cfg.boards:
        return []
    name = str(cfg.source)
    issues: list[ConfigIssue] = []
    entries = {b.address: (i, b) for i, b in enumerate(cfg.boards, 1)}
    missing = sorted({s.board for s in planogram} - set(entries))
    if missing:
        issues.append(
            ConfigIssue(
                name,
                "board",
                missing,
                _p("board_no_table", boards=", ".join(map(str, missing))),
            )
        )
    must = {"vmc": SlotKind.SPIRAL, "modbus-locks": SlotKind.LOCKER}
    for address, (i, b) in sorted(entries.items()):
        kind = must.get(b.protocol)
        wrong = sorted(s.slot_no for s in planogram if s.board == address and s.kind != kind)
        if kind is not None and wrong:
            more = " ..." if len(wrong) > 10 else ""
            issues.append(
                ConfigIssue(
                    name,
                    f"board[{i}].protocol",
                    b.protocol,
                    _p(
                        "board_wrong_kind",
                        kind=kind.value,
                        slots=", ".join(map(str, wrong[:10])),
                        more=more,
                        address=address,
                    ),
                )
            )
    return _located(issues, cfg.key_lines)


def _board_checks(name: str, cfg: KioskConfig) -> list[ConfigIssue]:
    """[[board]] against itself and the sections it replaces: addresses once, one protocol
    per port (several kiosk boards share one bus port, several lock boards one RS-485 line,
    a VMC has its port alone), a VMC at 57600."""
    if not cfg.boards:
        return []
    issues: list[ConfigIssue] = []
    seen: dict[int, int] = {}
    on_port: dict[str, tuple[int, BoardConfig]] = {}
    units: dict[tuple[str, int], int] = {}
    for i, b in enumerate(cfg.boards, 1):
        where = f"board[{i}]"
        if b.address in seen:
            issues.append(
                ConfigIssue(
                    name,
                    f"{where}.address",
                    b.address,
                    _p("board_address_twice", j=seen[b.address]),
                )
            )
        seen.setdefault(b.address, i)
        if b.protocol == "vmc" and b.baud != 57600:
            issues.append(ConfigIssue(name, f"{where}.baud", b.baud, _p("vmc_baud")))
        first = on_port.setdefault(b.port, (i, b))
        if first[0] != i:
            problem = _shared_port_problem(first[0], first[1], b)
            if problem is not None:
                issues.append(ConfigIssue(name, f"{where}.port", b.port, problem))
        if b.protocol == "modbus-locks":
            other = units.setdefault((b.port, b.unit), i)
            if other != i:
                issues.append(
                    ConfigIssue(
                        name,
                        f"{where}.unit",
                        b.unit,
                        _p("board_unit_twice", j=other, port=b.port, unit=b.unit),
                    )
                )
    issues.extend(_board_section_checks(name, cfg, units))
    return issues


def _shared_port_problem(j: int, first: BoardConfig, b: BoardConfig) -> Problem | None:
    if first.protocol != b.protocol:
        return _p("port_other_protocol", j=j, protocol=first.protocol)
    if b.protocol == "vmc":
        return _p("port_one_vmc", j=j)
    if first.baud != b.baud:
        return _p("port_one_baud", j=j, baud=first.baud)
    return None


def _board_section_checks(
    name: str, cfg: KioskConfig, units: Mapping[tuple[str, int], int]
) -> list[ConfigIssue]:
    """The [hardware] / [modbus] keys that [[board]] replaces, and the sensor's line."""
    issues: list[ConfigIssue] = []
    hw, m = cfg.hardware, cfg.modbus
    if hw.protocol != "kiosk":
        issues.append(
            ConfigIssue(
                name,
                "hardware.protocol",
                hw.protocol,
                _p("board_protocol_here"),
            )
        )
    addresses = {b.address for b in cfg.boards}
    if hw.boards != (0,) and set(hw.boards) != addresses:
        issues.append(
            ConfigIssue(
                name,
                "hardware.boards",
                list(hw.boards),
                _p("board_addresses_differ", addresses=sorted(addresses)),
            )
        )
    if m.locks:
        issues.append(
            ConfigIssue(
                name,
                "modbus.locks",
                m.locks,
                _p("board_locks_here"),
            )
        )
    if m.sensor_unit and m.port.strip():
        users = [b for b in cfg.boards if b.port == m.port and b.protocol != "modbus-locks"]
        if users:
            issues.append(
                ConfigIssue(
                    name,
                    "modbus.port",
                    m.port,
                    _p("sensor_port_taken", address=users[0].address, protocol=users[0].protocol),
                )
            )
        if (m.port, m.sensor_unit) in units:
            issues.append(
                ConfigIssue(
                    name,
                    "modbus.sensor_unit",
                    m.sensor_unit,
                    _p("sensor_unit_taken", j=units[m.port, m.sensor_unit], port=m.port),
                )
            )
    return issues


def _modbus_checks(name: str, cfg: KioskConfig) -> list[ConfigIssue]:
    m = cfg.modbus
    issues: list[ConfigIssue] = []
    if (m.locks or m.sensor_unit) and not m.port.strip():
        issues.append(
            ConfigIssue(
                name,
                "modbus.port",
                m.port,
                _p("modbus_port_needed"),
            )
        )
    if m.locks and cfg.hardware.cabinet != "locker":
        issues.append(
            ConfigIssue(
                name,
                "modbus.locks",
                m.locks,
                _p("modbus_locks_locker"),
            )
        )
    return issues


def _service_checks(name: str, cfg: KioskConfig) -> list[ConfigIssue]:
    from kiosk.core.pin import is_demo_pin_hash

    issues: list[ConfigIssue] = []
    if cfg.ui.service_pin_hash and any(
        t.id == LEGACY_TECHNICIAN_ID for t in cfg.service.technicians
    ):
        issues.append(
            ConfigIssue(
                name,
                "service.technicians",
                LEGACY_TECHNICIAN_ID,
                _p("tech_id_taken", tid=LEGACY_TECHNICIAN_ID),
            )
        )
    if not is_field_config(cfg):
        return issues
    for i, t in enumerate(technicians(cfg), 1):
        if is_demo_pin_hash(t.pin_hash):
            key = (
                "ui.service_pin_hash"
                if t.id == LEGACY_TECHNICIAN_ID and t.pin_hash == cfg.ui.service_pin_hash
                else f"service.technicians[{i}].pin_hash"
            )
            issues.append(
                ConfigIssue(
                    name,
                    key,
                    f"(technician {t.id})",
                    _p("demo_pin"),
                )
            )
    return issues


def _cross_checks(name: str, cfg: KioskConfig) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    ident = cfg.identity
    m = KIOSK_ID_RE.match(ident.kiosk_id)
    if m and m["area"] != ident.area_code:
        issues.append(
            ConfigIssue(
                name,
                "identity.kiosk_id",
                ident.kiosk_id,
                _p("area_differs", id_area=m["area"], area=ident.area_code),
            )
        )
    hw = cfg.hardware
    if hw.cabinet == "locker" and hw.default_capacity != 1:
        issues.append(
            ConfigIssue(
                name,
                "hardware.default_capacity",
                hw.default_capacity,
                _p("locker_capacity"),
            )
        )
    issues.extend(_modbus_checks(name, cfg))
    issues += _vmc_checks(name, hw) if not cfg.boards else _board_checks(name, cfg)
    s = cfg.sync
    if s.broker_url.startswith("mqtt://") and not s.allow_plaintext:
        issues.append(
            ConfigIssue(
                name,
                "sync.broker_url",
                s.broker_url,
                _p("plaintext_mqtt"),
            )
        )
    if s.broker_url.startswith("mqtts://") and s.ca_file is None:
        issues.append(ConfigIssue(name, "sync.ca_file", _MISSING, _p("ca_required")))
    if (s.cert_file is None) != (s.key_file is None):
        issues.append(ConfigIssue(name, "sync.cert_file", str(s.cert_file), _p("cert_key_pair")))
    for key, path in (
        ("sync.ca_file", s.ca_file),
        ("sync.cert_file", s.cert_file),
        ("sync.key_file", s.key_file),
        ("sync.province_public_key", s.province_public_key),
        ("sync.province_root_key", s.province_root_key),
        ("payments.device_secret_file", cfg.payments.device_secret_file),
        ("ui.font_path", cfg.ui.font_path),
        ("update.release_public_key", cfg.update.release_public_key),
    ):
        if path is not None and not path.is_file():
            issues.append(ConfigIssue(name, key, str(path), _p("file_missing")))
    ui = cfg.ui
    portrait = ui.height >= ui.width
    if portrait != (ui.orientation == "portrait"):
        issues.append(
            ConfigIssue(
                name,
                "ui.orientation",
                ui.orientation,
                _p("orientation_size", width=ui.width, height=ui.height),
            )
        )
    if ui.dim_after_s < ui.idle_timeout_s:
        issues.append(
            ConfigIssue(
                name,
                "ui.dim_after_s",
                ui.dim_after_s,
                _p("not_shorter", other="ui.idle_timeout_s"),
            )
        )
    issues.extend(_resend_checks(name, s))
    issues.extend(_root_key_checks(name, s))
    issues.extend(_service_checks(name, cfg))
    return issues


def _resend_checks(name: str, s: SyncConfig) -> list[ConfigIssue]:
    """The resend rounds' gap grows from sync.ack_timeout_s to sync.resend_cap_s."""
    if s.resend_cap_s >= s.ack_timeout_s:
        return []
    return [
        ConfigIssue(
            name,
            "sync.resend_cap_s",
            s.resend_cap_s,
            _p("not_shorter", other="sync.ack_timeout_s"),
        )
    ]


def _vmc_checks(name: str, hw: HardwareConfig) -> list[ConfigIssue]:
    """A VMC (docs/boards/vmc.md) is one spiral controller on its own RS-232 port at 57600."""
    if hw.protocol != "vmc":
        return []
    issues: list[ConfigIssue] = []
    if hw.baud != 57600:
        issues.append(ConfigIssue(name, "hardware.baud", hw.baud, _p("vmc_baud")))
    if hw.cabinet != "spiral":
        issues.append(
            ConfigIssue(
                name,
                "hardware.cabinet",
                hw.cabinet,
                _p("vmc_cabinet"),
            )
        )
    if hw.boards != (0,):
        issues.append(
            ConfigIssue(
                name,
                "hardware.boards",
                list(hw.boards),
                _p("vmc_boards"),
            )
        )
    return issues


def _root_key_checks(name: str, s: SyncConfig) -> list[ConfigIssue]:
    """The root key signs key sets only: it must not also be the signing key."""
    root, signing = s.province_root_key, s.province_public_key
    if root is None or signing is None or not root.is_file() or not signing.is_file():
        return []
    from cryptography.hazmat.primitives import serialization

    def spki(path: Path) -> bytes:
        return serialization.load_pem_public_key(path.read_bytes()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    try:
        same = spki(root) == spki(signing)
    except OSError as e:  # the key file exists but cannot be read (permissions)
        key = "sync.province_root_key" if e.filename == str(root) else "sync.province_public_key"
        path = root if key == "sync.province_root_key" else signing
        return [ConfigIssue(name, key, str(path), _p("file_unreadable", reason=e))]
    except (ValueError, TypeError) as e:
        problem = _p("not_pem_key", error=e)  # cryptography's words, wrapped in the user's
        return [ConfigIssue(name, "sync.province_root_key", str(root), problem)]
    if same:
        return [
            ConfigIssue(
                name,
                "sync.province_root_key",
                str(root),
                _p("root_key_same"),
            )
        ]
    return []


# --- field configs: no test or demo paths -----------------------------------------------------

# SHA-256 of the published demo device secret (kiosk/data/demo-device-secret), as stored and
# without surrounding white space: that file is public, so a kiosk using it signs pay URLs and
# offline codes anyone can forge (tests/unit/test_field_config.py checks the digests)
DEMO_SECRET_SHA256 = frozenset(
    {
        "2511988f55c044621bc8baa42b2a3fc33fa4cff5bb5e2608c4df7d3eccc31b73",
        "c93404090e3f1926fc2ea420828ce8e7fb7e9271f339971a5fa29d60e5f8ece2",
    }
)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_demo_secret(secret: bytes) -> bool:
    digests = {hashlib.sha256(s).hexdigest() for s in (secret, secret.strip())}
    return bool(digests & DEMO_SECRET_SHA256)


def is_field_config(cfg: KioskConfig) -> bool:
    """A config that points at a real province: its broker (sync.broker_url, whatever the
    scheme) is not on this machine's loopback. The demo, the rehearsal of the technician's
    guide and the tests run their broker on 127.0.0.1; a kiosk in a lobby never does."""
    return not _is_loopback(urlsplit(cfg.sync.broker_url).hostname)


def field_problems(
    cfg: KioskConfig, *, test_payments: bool = False, device_secret: bytes | None = None
) -> list[ConfigIssue]:
    """The one rule for test and demo paths: in a field config (`is_field_config`) the test
    payment signer (`kiosk run --test-payments`, or any other key than the province's for
    payment confirmations) and the published demo device secret are refused. Empty for a
    demo/test config, whatever is asked."""
    if not is_field_config(cfg):
        return []
    name, url = str(cfg.source), cfg.sync.broker_url
    issues: list[ConfigIssue] = []
    if test_payments:
        issues.append(
            ConfigIssue(
                name,
                "sync.broker_url",
                url,
                _p("test_payments_field"),
            )
        )
    if device_secret is not None and _is_demo_secret(device_secret):
        issues.append(
            ConfigIssue(
                name,
                "payments.device_secret_file",
                str(cfg.payments.device_secret_file),
                _p("demo_secret_field"),
            )
        )
    return _located(issues, cfg.key_lines)


# --- the device secret ([payments] device_secret_file) ----------------------------------------

# The device secret file as `kiosk-provision register` writes it (mode 0600): the province's 32
# random bytes as 64 lower-case hex digits and a newline. The payment HMAC key is the file's
# bytes exactly as stored, newline included (docs/province-guide.md, "File format"), so a kiosk
# with any other bytes (even without the newline) signs pay URLs the province cannot check
_DEVICE_SECRET = re.compile(rb"[0-9a-f]{64}\n")
_SECRET_KEY = "payments.device_secret_file"


def device_secret_problems(cfg: KioskConfig, secret: bytes | None) -> list[ConfigIssue]:
    """What keeps `kiosk run` from signing payments: payments.device_secret_file not set, or
    the file's bytes (`secret`; None: not read) not a device secret (`_DEVICE_SECRET`). In the
    user's language (kiosk.textfile); `kiosk config check` and `kiosk run` both say it."""
    name, path, lines = str(cfg.source), cfg.payments.device_secret_file, cfg.key_lines
    if path is None:
        return _located([ConfigIssue(name, _SECRET_KEY, _MISSING, _p("secret_not_set"))], lines)
    if secret is None or _DEVICE_SECRET.fullmatch(secret):
        return []
    issue = ConfigIssue(name, _SECRET_KEY, str(path), _p("secret_malformed", n=len(secret)))
    return _located([issue], lines)


def refuse_in_field(
    cfg: KioskConfig, *, test_payments: bool = False, device_secret: bytes | None = None
) -> None:
    """Raise ConfigError with `field_problems` when there are any."""
    issues = field_problems(cfg, test_payments=test_payments, device_secret=device_secret)
    if issues:
        raise ConfigError(issues)

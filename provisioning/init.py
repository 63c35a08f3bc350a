"""`kiosk-provision init`: write the kiosk config from prompts, flags or an answers file.

Owns: the technician's questions (one `Field` per answer, each with its flag, answers-file key,
prompt, default and parser), checking each answer on its own (re-asked when interactive), then
the whole config with `kiosk.config` before anything is written, and reporting every problem by
the name the technician used (`--kiosk-id`, `kiosk_id in answers.toml`, or the prompt).
The config is written atomically with mode 0600; an existing one is replaced only with --force,
after a backup. Never echoes the service PIN and stores only its PBKDF2 hash, as the first
`[[service.technicians]]` entry (id from --technician). The PIN never goes on a command line:
it comes from a prompt, `--pin-file FILE`, $KIOSK_PROVISION_PIN or the answers file.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from kiosk import exitcodes
from kiosk.config import (
    KIOSK_ID_FORMAT,
    KIOSK_ID_RE,
    RULES,
    TECHNICIAN_ID_RE,
    ConfigError,
    SiteType,
    resolve_config_path,
)
from kiosk.core.pin import hash_pin
from kiosk.sync.identity import CryptoError, cert_fingerprint, load_cert, public_key_fingerprint
from kiosk.textfile import os_reason, say
from provisioning.files import backup, write_config_checked

__all__ = ["ENV_PIN", "FIELDS", "Field", "add_parser", "cmd_init", "read_pin_file", "run_init"]

#: The service PIN from the environment (a script's secret store), never from a flag.
ENV_PIN = "KIOSK_PROVISION_PIN"

Parsed = dict[str, Any]  # config key -> value


@dataclass(frozen=True)
class Field:
    name: str  # answers-file key; flag is --name-with-dashes
    prompt: str | None  # None: flag / answers file only, never asked
    parse: Callable[[str, Path], Parsed]  # (text, base dir for relative paths) -> config values
    default: str | Callable[[dict[str, str]], str] | None = None  # None: required
    secret: bool = False  # asked without echo; never a flag (secrets stay off command lines)
    help: str = ""

    @property
    def flag(self) -> str:
        """How the technician names it on the command line (a secret only by its file)."""
        return "--" + self.name.replace("_", "-") + ("-file" if self.secret else "")

    def default_for(self, answers: dict[str, str]) -> str | None:
        return self.default(answers) if callable(self.default) else self.default


# --- parsers --------------------------------------------------------------------------------


def _kiosk_id(text: str, _b: Path) -> Parsed:
    v = text.strip().upper()
    m = KIOSK_ID_RE.match(v)
    if not m:
        raise ValueError(f"must be {KIOSK_ID_FORMAT}, e.g. AH-340102-0007")
    return {"identity.kiosk_id": v, "identity.area_code": m["area"]}


def _nonempty(key: str) -> Callable[[str, Path], Parsed]:
    def parse(text: str, _b: Path) -> Parsed:
        if not text.strip():
            raise ValueError("must not be empty")
        return {key: text.strip()}

    return parse


def _text(key: str) -> Callable[[str, Path], Parsed]:
    return lambda text, _b: {key: text.strip()}


def _choice(key: str, *allowed: str) -> Callable[[str, Path], Parsed]:
    def parse(text: str, _b: Path) -> Parsed:
        v = text.strip().lower()
        if v not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return {key: v}

    return parse


def _int(key: str) -> Callable[[str, Path], Parsed]:
    def parse(text: str, _b: Path) -> Parsed:
        try:
            return {key: int(text.strip())}
        except ValueError:
            raise ValueError("must be a whole number") from None

    return parse


def _gps(text: str, _b: Path) -> Parsed:
    if not text.strip():
        return {}
    try:
        lat_s, lon_s = text.replace("，", ",").split(",")
        return {"identity.latitude": float(lat_s), "identity.longitude": float(lon_s)}
    except ValueError:
        raise ValueError(
            "must be LATITUDE,LONGITUDE in decimal degrees, e.g. 31.869,117.283"
        ) from None


def _boards(text: str, _b: Path) -> Parsed:
    try:
        return {"hardware.boards": [int(p) for p in text.replace(" ", "").split(",") if p]}
    except ValueError:
        raise ValueError("must be board addresses separated by commas, e.g. 0 or 0,1") from None


def _screen(text: str, _b: Path) -> Parsed:
    try:
        w_s, h_s = text.lower().replace("×", "x").split("x")
        w, h = int(w_s), int(h_s)
    except ValueError:
        raise ValueError("must be WIDTHxHEIGHT in pixels, e.g. 1080x1920") from None
    return {
        "ui.width": w,
        "ui.height": h,
        "ui.orientation": "portrait" if h >= w else "landscape",
    }


def _yesno(key: str) -> Callable[[str, Path], Parsed]:
    def parse(text: str, _b: Path) -> Parsed:
        v = text.strip().lower()
        if v in ("y", "yes", "true", "1", "on", "是"):
            return {key: True}
        if v in ("n", "no", "false", "0", "off", "否", ""):
            return {key: False}
        raise ValueError("must be yes or no")

    return parse


def _path(text: str, base: Path) -> Path:
    p = Path(text.strip()).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _ca_file(text: str, base: Path) -> Parsed:
    if not text.strip():
        return {}
    p = _path(text, base)
    try:
        load_cert(p.read_bytes())
    except OSError as e:
        raise ValueError(f"cannot read {p}: {e.strerror}") from None
    except CryptoError:
        raise ValueError(f"{p} is not a PEM certificate") from None
    return {"sync.ca_file": str(p)}


def _ed25519_file(config_key: str) -> Callable[[str, Path], Parsed]:
    def parse(text: str, base: Path) -> Parsed:
        if not text.strip():
            return {}
        p = _path(text, base)
        try:
            from kiosk.sync.signing import load_public_key_pem

            load_public_key_pem(p)
        except OSError as e:
            raise ValueError(f"cannot read {p}: {e.strerror}") from None
        except ValueError:
            raise ValueError(f"{p} is not an Ed25519 public key (PEM)") from None
        return {config_key: str(p)}

    return parse


_province_key = _ed25519_file("sync.province_public_key")
_province_root_key = _ed25519_file("sync.province_root_key")  # signs key sets only


def _fingerprint(text: str, _b: Path) -> Parsed:
    v = text.strip().upper().replace(":", "")
    if v and (len(v) != 64 or any(c not in "0123456789ABCDEF" for c in v)):
        raise ValueError("must be a SHA-256 fingerprint (64 hex digits, colons allowed)")
    return {}


def _client_ca_fingerprint(text: str, base: Path) -> Parsed:
    _fingerprint(text, base)
    v = text.strip().upper().replace(":", "")
    return {"sync.client_ca_fingerprint": v} if v else {}


def _data_dir(text: str, base: Path) -> Parsed:
    if not text.strip():
        raise ValueError("must not be empty")
    return {"store.data_dir": str(_path(text, base))}


def _pin(text: str, _b: Path) -> Parsed:
    try:
        return {"service.pin_hash": hash_pin(text.strip())}
    except ValueError as e:
        raise ValueError(str(e)) from None


def _technician(text: str, _b: Path) -> Parsed:
    v = text.strip()
    if not TECHNICIAN_ID_RE.match(v):
        raise ValueError("must be 1-32 letters, digits, . _ or - (e.g. T0042)")
    return {"service.id": v}


def read_pin_file(path: Path) -> str:
    """The PIN in the first line of `path` (ValueError naming the file when unreadable)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        why = os_reason(e) if isinstance(e, OSError) else say("not_utf8_short")
        raise ValueError(say("pin_file_unreadable", file=path, reason=why)) from None
    return lines[0].strip() if lines else ""


FIELDS: tuple[Field, ...] = (
    Field("kiosk_id", "Kiosk id 柜号 (AH-<area code>-<serial>)", _kiosk_id, help=KIOSK_ID_FORMAT),
    Field("site_name", "Site name 点位名称", _nonempty("identity.site_name")),
    Field(
        "site_type",
        f"Site type 点位类型 ({', '.join(s.value for s in SiteType)})",
        _choice("identity.site_type", *(s.value for s in SiteType)),
    ),
    Field("address", "Address 地址", _text("identity.address"), default=""),
    Field("gps", "GPS 坐标 (LAT,LON, empty to skip)", _gps, default="", help="LAT,LON"),
    Field(
        "cabinet",
        "Cabinet kind 柜型 (spiral, locker)",
        _choice("hardware.cabinet", "spiral", "locker"),
        default="spiral",
    ),
    Field("boards", "Board addresses 控制板地址 (e.g. 0 or 0,1)", _boards, default="0"),
    Field("rows", "Rows 行数", _int("hardware.rows"), default="6"),
    Field("cols", "Columns 列数", _int("hardware.cols"), default="10"),
    Field(
        "capacity",
        "Capacity per slot 每货道容量",
        _int("hardware.default_capacity"),
        default=lambda a: "1" if a.get("cabinet", "").strip().lower() == "locker" else "10",
    ),
    Field(
        "port",
        "Serial port 串口 (path or pyserial URL)",
        _nonempty("hardware.port"),
        default="/dev/ttyUSB0",
    ),
    Field("baud", "Baud rate 波特率", _int("hardware.baud"), default="115200"),
    Field(
        "broker_url",
        "Province broker URL 省平台 MQTT (mqtts://host:8883)",
        _nonempty("sync.broker_url"),
    ),
    Field(
        "allow_plaintext",
        None,
        _yesno("sync.allow_plaintext"),
        default="no",
        help="allow mqtt:// without TLS (demo and emulator only)",
    ),
    Field("pay_url", "Pay URL base 支付链接前缀 (https://...)", _nonempty("payments.pay_url_base")),
    Field(
        "ca_file",
        "CA certificate file CA 证书 (PEM; empty only with mqtt://)",
        _ca_file,
        default="",
    ),
    Field(
        "ca_fingerprint",
        None,
        _fingerprint,
        default="",
        help="expected SHA-256 of the CA certificate (checked when given)",
    ),
    Field(
        "client_ca_fingerprint",
        None,
        _client_ca_fingerprint,
        default="",
        help="SHA-256 of the CA that signs the kiosk's certificate at registration, when it is "
        "not the --ca-file CA (register refuses any other CA)",
    ),
    Field(
        "province_key",
        "Province public key 省平台公钥 (PEM, empty to skip)",
        _province_key,
        default="",
    ),
    Field(
        "province_key_fingerprint",
        None,
        _fingerprint,
        default="",
        help="expected SHA-256 of the province public key (checked when given)",
    ),
    Field(
        "province_root_key",
        "Province root key 省平台根公钥 (PEM; signs key changes; empty: keys frozen)",
        _province_root_key,
        default="",
    ),
    Field(
        "province_root_key_fingerprint",
        None,
        _fingerprint,
        default="",
        help="expected SHA-256 of the province root key (checked when given)",
    ),
    Field("language", "Language 语言 (zh, en)", _choice("ui.language", "zh", "en"), default="zh"),
    Field("screen", "Screen 屏幕 (WIDTHxHEIGHT)", _screen, default="1080x1920"),
    Field("data_dir", "Data directory 数据目录", _data_dir, default="/var/lib/kiosk"),
    Field(
        "technician",
        "Technician id 技术员编号 (e.g. T0042)",
        _technician,
        default="default",
        help="the id the service PIN logs in as (every technician event carries it)",
    ),
    Field("pin", "Service PIN 维护密码 (6-12 digits)", _pin, secret=True),
)
BY_NAME = {f.name: f for f in FIELDS}
# config keys filled by each field (for mapping kiosk.config's problems back to the technician)
KEY_OWNER: dict[str, str] = {
    "identity.kiosk_id": "kiosk_id",
    "identity.area_code": "kiosk_id",
    "identity.site_name": "site_name",
    "identity.site_type": "site_type",
    "identity.address": "address",
    "identity.latitude": "gps",
    "identity.longitude": "gps",
    "hardware.cabinet": "cabinet",
    "hardware.boards": "boards",
    "hardware.rows": "rows",
    "hardware.cols": "cols",
    "hardware.default_capacity": "capacity",
    "hardware.port": "port",
    "hardware.baud": "baud",
    "sync.broker_url": "broker_url",
    "sync.allow_plaintext": "allow_plaintext",
    "sync.ca_file": "ca_file",
    "sync.client_ca_fingerprint": "client_ca_fingerprint",
    "sync.province_public_key": "province_key",
    "sync.province_root_key": "province_root_key",
    "payments.pay_url_base": "pay_url",
    "ui.language": "language",
    "ui.width": "screen",
    "ui.height": "screen",
    "ui.orientation": "screen",
    "ui.service_pin_hash": "pin",
    "service.technicians": "pin",
    "store.data_dir": "data_dir",
}


def check_field(f: Field, text: str, base: Path) -> tuple[Parsed, str | None]:
    """Parse and check one answer on its own; (values, problem or None)."""
    try:
        values = f.parse(text, base)
    except ValueError as e:
        return {}, str(e)
    for key, value in values.items():
        rule = RULES.get(key)
        if rule is None:
            continue
        problem = rule(str(value) if key == "hardware.baud" else value)
        if problem:
            if key == "identity.area_code":
                problem = f"area code {value} is not in Anhui: {problem}"
            return {}, problem
    return values, None


def _fingerprints(
    values: dict[str, Parsed], answers: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """Lines to show, and problems (field -> text) when an expected fingerprint differs."""
    lines: list[str] = []
    problems: dict[str, str] = {}
    ca = values.get("ca_file", {}).get("sync.ca_file")
    if ca:
        fp = cert_fingerprint(load_cert(Path(ca).read_bytes()))
        lines.append(f"CA certificate SHA-256:      {fp}")
        want = answers.get("ca_fingerprint", "").strip().upper().replace(":", "")
        if want and want != fp.replace(":", ""):
            problems["ca_fingerprint"] = f"does not match the CA certificate ({fp})"
    for field, key, label in (
        ("province_key", "sync.province_public_key", "Province public key"),
        ("province_root_key", "sync.province_root_key", "Province root key  "),
    ):
        pk = values.get(field, {}).get(key)
        if not pk:
            continue
        from kiosk.sync.signing import key_id, load_public_key_pem

        raw = load_public_key_pem(pk)
        spki = serialization.load_pem_public_key(Path(pk).read_bytes()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        fp = public_key_fingerprint(spki)
        lines.append(f"{label} SHA-256: {fp} (key id {key_id(raw)})")
        want = answers.get(f"{field}_fingerprint", "").strip().upper().replace(":", "")
        if want and want != fp.replace(":", ""):
            problems[f"{field}_fingerprint"] = f"does not match the {label.strip().lower()} ({fp})"
    return lines, problems


def build_raw(values: dict[str, Parsed]) -> dict[str, dict[str, Any]]:
    raw: dict[str, dict[str, Any]] = {
        "identity": {},
        "hardware": {"driver": "serial"},
        "sync": {},
        "payments": {},
        "ui": {},
        "store": {},
    }
    tech: dict[str, Any] = {}
    for parsed in values.values():
        for dotted, value in parsed.items():
            section, _, key = dotted.partition(".")
            if section == "service":  # technician + pin: one [[service.technicians]] entry
                tech[key] = value
                continue
            raw[section][key] = value
    if "pin_hash" in tech:
        raw["service"] = {"technicians": [{"id": tech.get("id", "default"), **tech}]}
    return raw


# --- the command ----------------------------------------------------------------------------


def _label(name: str, origin: dict[str, str]) -> str:
    return origin.get(name, BY_NAME[name].flag)


def run_init(
    args: argparse.Namespace,
    *,
    ask: Callable[[str], str] = input,
    ask_secret: Callable[[str], str] = getpass.getpass,
    out: Callable[[str], None] = print,
) -> int:
    path = resolve_config_path(args.config)
    interactive = bool(args.interactive) or (
        not args.non_interactive and not args.answers and sys.stdin.isatty()
    )
    answers: dict[str, str] = {}
    origin: dict[str, str] = {}
    base: dict[str, Path] = {}
    problems: list[str] = []
    if not _gather_answers(args, answers, origin, base, problems, out):
        return exitcodes.USAGE
    if path.exists() and not args.force:
        out(f"error: {path} exists; use --force to replace it (a backup is kept)")
        return exitcodes.FAIL

    values = _field_values(answers, origin, base, problems, interactive, ask, ask_secret, out)
    if problems:
        out("error: the config was not written:")
        for p in problems:
            out(f"  {p}")
        return exitcodes.USAGE

    for _attempt in range(5):
        lines, fp_problems = _fingerprints(values, answers)
        if fp_problems:
            for name, p in fp_problems.items():
                out(f"error: {_label(name, origin)}: {p}")
            return exitcodes.USAGE
        for line in lines:
            out(line)
        if interactive and lines:
            confirm = ask("Do these fingerprints match the province's sheet? 指纹是否一致? [y/N] ")
            if confirm.strip().lower() not in ("y", "yes", "是"):
                out("not confirmed: nothing written")
                return exitcodes.FAIL
        kept = backup(path) if path.exists() else None
        try:
            cfg = write_config_checked(path, build_raw(values))
        except ConfigError as e:
            bad: list[str] = []
            for issue in e.issues:
                owner = KEY_OWNER.get(issue.key.partition("[")[0])
                name = _label(owner, origin) if owner else issue.key
                out(f"error: {name}: {issue.problem} (config key {issue.key})")
                if owner:
                    bad.append(owner)
            if kept is not None:
                kept.unlink(missing_ok=True)
            if not interactive or not bad:
                return exitcodes.USAGE
            for name in dict.fromkeys(bad):
                f = BY_NAME[name]
                if f.prompt is not None:
                    values[name] = _ask_until_valid(f, answers, ask, ask_secret, out)
            continue
        out(f"wrote {path} (mode 0600) for {cfg.identity.kiosk_id}")
        if kept is not None:
            out(f"previous config kept as {kept}")
        out("next: kiosk-provision keys, then kiosk-provision register (it asks for the token)")
        return exitcodes.OK
    return exitcodes.USAGE


def _gather_answers(
    args: argparse.Namespace,
    answers: dict[str, str],
    origin: dict[str, str],
    base: dict[str, Path],
    problems: list[str],
    out: Callable[[str], None],
) -> bool:
    """Fill `answers` (field -> text), `origin` (where each came from) and `base` (the folder a
    relative path in it is relative to) from the answers file, then the flags (which win).
    False: the answers file cannot be read (said with `out`); unknown keys go to `problems`."""
    if args.answers:
        apath = Path(args.answers)
        try:
            data = tomllib.loads(apath.read_text(encoding="utf-8-sig"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            out(f"error: cannot read the answers file {apath}: {e}")
            return False
        for k, v in data.items():
            if k not in BY_NAME:
                problems.append(f"{k} in {apath}: unknown answer; known: {', '.join(BY_NAME)}")
                continue
            answers[k] = ",".join(map(str, v)) if isinstance(v, list) else str(v)
            if isinstance(v, bool):
                answers[k] = "yes" if v else "no"
            origin[k] = f"{k} in {apath}"
            base[k] = apath.parent.resolve()
    for f in FIELDS:
        v = getattr(args, f.name, None)
        if v is not None and not f.secret:
            answers[f.name] = str(v)
            origin[f.name] = f.flag
            base[f.name] = Path.cwd()
    env_pin = os.environ.get(ENV_PIN)
    if env_pin is not None:
        answers["pin"], origin["pin"] = env_pin, f"${ENV_PIN}"
    pin_file = getattr(args, "pin_file", None)
    if pin_file:
        try:
            answers["pin"] = read_pin_file(Path(pin_file))
        except ValueError as e:
            out(f"error: --pin-file: {e}")
            return False
        origin["pin"] = f"--pin-file {pin_file}"
    return True


def _field_values(
    answers: dict[str, str],
    origin: dict[str, str],
    base: dict[str, Path],
    problems: list[str],
    interactive: bool,
    ask: Callable[[str], str],
    ask_secret: Callable[[str], str],
    out: Callable[[str], None],
) -> dict[str, Parsed]:
    """Every field checked: its answer, else asked for (interactive), else its default.
    Bad or missing answers go to `problems` when not interactive."""
    values: dict[str, Parsed] = {}
    for f in FIELDS:
        text = answers.get(f.name)
        if text is not None:
            parsed, problem = check_field(f, text, base.get(f.name, Path.cwd()))
            if problem is None:
                values[f.name] = parsed
                continue
            if not interactive:
                shown = "(hidden)" if f.secret else repr(text)
                problems.append(f"{_label(f.name, origin)} = {shown}: {problem}")
                continue
            out(f"{_label(f.name, origin)}: {problem}")
        if interactive and f.prompt is not None:
            values[f.name] = _ask_until_valid(f, answers, ask, ask_secret, out)
            origin[f.name] = f.prompt
            continue
        default = f.default_for(answers)
        if default is None:
            problems.append(f"{f.flag}: required (answers file key: {f.name})")
            continue
        parsed, problem = check_field(f, default, Path.cwd())
        values[f.name] = parsed
    return values


def _ask_until_valid(
    f: Field,
    answers: dict[str, str],
    ask: Callable[[str], str],
    ask_secret: Callable[[str], str],
    out: Callable[[str], None],
) -> Parsed:
    assert f.prompt is not None
    while True:
        default = f.default_for(answers)
        shown = f" [{default}]" if default else ""
        text = (ask_secret if f.secret else ask)(f"{f.prompt}{shown}: ")
        if not text.strip() and default is not None:
            text = default
        parsed, problem = check_field(f, text, Path.cwd())
        if problem is None:
            if f.secret:
                again = ask_secret("Repeat the PIN 再输入一次: ")
                if again.strip() != text.strip():
                    out("  the PINs differ, try again 两次输入不一致")
                    continue
            answers[f.name] = "" if f.secret else text
            return parsed
        out(f"  {problem}")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init",
        allow_abbrev=False,  # `--pin 123456` must not pass for `--pin-file 123456`
        help="write the kiosk config (prompts, or flags / --answers FILE)",
        description="Without --non-interactive or --answers, asks each question on a terminal. "
        "Flags pre-fill answers; an answers file holds the same names as TOML keys "
        '(kiosk_id = "AH-340102-0007").',
    )
    p.add_argument(
        "--config",
        metavar="PATH",
        help="where to write (default $KIOSK_CONFIG or /etc/kiosk/kiosk.toml)",
    )
    p.add_argument("--answers", metavar="FILE", help="TOML file with the answers")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--non-interactive", action="store_true", help="never prompt")
    mode.add_argument("--interactive", action="store_true", help="prompt even without a tty")
    p.add_argument("--force", action="store_true", help="replace an existing config (backup kept)")
    for f in FIELDS:
        if f.secret:
            continue
        default = f.default if isinstance(f.default, str) else None
        extra = f" (default {default!r})" if default else ""
        p.add_argument(
            f.flag, dest=f.name, metavar="VALUE", help=(f.help or (f.prompt or f.name)) + extra
        )
    p.add_argument(
        "--pin-file",
        metavar="FILE",
        help=f"read the service PIN from the first line of FILE (or set ${ENV_PIN}; "
        "else it is asked for; never a flag value)",
    )
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    return run_init(args)

"""`kiosk-provision init`: write the kiosk config from prompts, flags or an answers file.

Owns: the technician's questions (one `Field` per answer, each with its flag, answers-file key,
prompt, default and parser), checking each answer on its own (re-asked when interactive), then
the whole config with `kiosk.config` before anything is written, and reporting every problem by
the name the technician used (`--kiosk-id`, `kiosk_id in answers.toml`, or the prompt).
The config is written atomically with mode 0600; an existing one is replaced only with --force,
after a backup. Never echoes the service PIN and stores only its PBKDF2 hash, as the first
`[[service.technicians]]` entry (id from --technician). The PIN never goes on a command line:
it comes from a prompt, `--pin-file FILE`, $KIOSK_PROVISION_PIN or the answers file.
Every prompt, refusal and result is in the technician's language (provisioning.init_text;
`--lang`, else $KIOSK_LANG, else the locale); a library's own words (an OS error, a parser's)
are put in a sentence in that language saying what to do, never shown alone.
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
from kiosk.core.pin import MAX_PIN_DIGITS, MIN_PIN_DIGITS, hash_pin
from kiosk.sync.identity import CryptoError, cert_fingerprint, load_cert, public_key_fingerprint
from kiosk.textfile import TextFileError, os_reason, read_text, say, say_toml_error
from provisioning.files import backup, write_config_checked
from provisioning.init_text import said

__all__ = ["ENV_PIN", "FIELDS", "Field", "add_parser", "cmd_init", "read_pin_file", "run_init"]

#: The service PIN from the environment (a script's secret store), never from a flag.
ENV_PIN = "KIOSK_PROVISION_PIN"

Parsed = dict[str, Any]  # config key -> value


@dataclass(frozen=True)
class Field:
    name: str  # answers-file key; flag is --name-with-dashes
    prompt: str | None  # an init_text key (shown in the user's language); None: never asked
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

    def asked(self) -> str:
        """The prompt, in the user's language."""
        assert self.prompt is not None
        return said(self.prompt, allowed=", ".join(s.value for s in SiteType))


def _bad(key: str, /, **fields: object) -> ValueError:
    """A rejected answer, said in the user's language (provisioning.init_text)."""
    return ValueError(said(key, **fields))


# --- parsers --------------------------------------------------------------------------------


def _kiosk_id(text: str, _b: Path) -> Parsed:
    v = text.strip().upper()
    m = KIOSK_ID_RE.match(v)
    if not m:
        raise _bad("kiosk_id")
    return {"identity.kiosk_id": v, "identity.area_code": m["area"]}


def _nonempty(key: str) -> Callable[[str, Path], Parsed]:
    def parse(text: str, _b: Path) -> Parsed:
        if not text.strip():
            raise _bad("not_empty")
        return {key: text.strip()}

    return parse


def _text(key: str) -> Callable[[str, Path], Parsed]:
    return lambda text, _b: {key: text.strip()}


def _choice(key: str, *allowed: str) -> Callable[[str, Path], Parsed]:
    def parse(text: str, _b: Path) -> Parsed:
        v = text.strip().lower()
        if v not in allowed:
            raise _bad("one_of", allowed=", ".join(allowed))
        return {key: v}

    return parse


def _int(key: str) -> Callable[[str, Path], Parsed]:
    def parse(text: str, _b: Path) -> Parsed:
        try:
            return {key: int(text.strip())}
        except ValueError:
            raise _bad("not_int") from None

    return parse


def _gps(text: str, _b: Path) -> Parsed:
    if not text.strip():
        return {}
    try:
        lat_s, lon_s = text.replace("，", ",").split(",")
        return {"identity.latitude": float(lat_s), "identity.longitude": float(lon_s)}
    except ValueError:
        raise _bad("gps") from None


def _boards(text: str, _b: Path) -> Parsed:
    try:
        return {"hardware.boards": [int(p) for p in text.replace(" ", "").split(",") if p]}
    except ValueError:
        raise _bad("boards") from None


def _screen(text: str, _b: Path) -> Parsed:
    try:
        w_s, h_s = text.lower().replace("×", "x").split("x")
        w, h = int(w_s), int(h_s)
    except ValueError:
        raise _bad("screen") from None
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
        raise _bad("yes_no")

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
        raise _bad("cannot_read", file=p, reason=os_reason(e)) from None
    except CryptoError:
        raise _bad("not_pem_cert", file=p) from None
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
            raise _bad("cannot_read", file=p, reason=os_reason(e)) from None
        except ValueError:
            raise _bad("not_ed25519", file=p) from None
        return {config_key: str(p)}

    return parse


_province_key = _ed25519_file("sync.province_public_key")
_province_root_key = _ed25519_file("sync.province_root_key")  # signs key sets only


def _fingerprint(text: str, _b: Path) -> Parsed:
    v = text.strip().upper().replace(":", "")
    if v and (len(v) != 64 or any(c not in "0123456789ABCDEF" for c in v)):
        raise _bad("fingerprint")
    return {}


def _client_ca_fingerprint(text: str, base: Path) -> Parsed:
    _fingerprint(text, base)
    v = text.strip().upper().replace(":", "")
    return {"sync.client_ca_fingerprint": v} if v else {}


def _data_dir(text: str, base: Path) -> Parsed:
    if not text.strip():
        raise _bad("not_empty")
    return {"store.data_dir": str(_path(text, base))}


def _pin(text: str, _b: Path) -> Parsed:
    pin = text.strip()
    digits = {"lo": MIN_PIN_DIGITS, "hi": MAX_PIN_DIGITS}
    if not pin.isascii() or not pin.isdigit():  # kiosk.core.pin.pin_problem, in their words
        raise _bad("pin_digits", **digits)
    if not MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS:
        raise _bad("pin_length", n=len(pin), **digits)
    return {"service.pin_hash": hash_pin(pin)}


def _technician(text: str, _b: Path) -> Parsed:
    v = text.strip()
    if not TECHNICIAN_ID_RE.match(v):
        raise _bad("technician")
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
    Field("kiosk_id", "prompt_kiosk_id", _kiosk_id, help=KIOSK_ID_FORMAT),
    Field("site_name", "prompt_site_name", _nonempty("identity.site_name")),
    Field(
        "site_type",
        "prompt_site_type",
        _choice("identity.site_type", *(s.value for s in SiteType)),
    ),
    Field("address", "prompt_address", _text("identity.address"), default=""),
    Field("gps", "prompt_gps", _gps, default="", help="LAT,LON"),
    Field(
        "cabinet",
        "prompt_cabinet",
        _choice("hardware.cabinet", "spiral", "locker"),
        default="spiral",
    ),
    Field("boards", "prompt_boards", _boards, default="0"),
    Field("rows", "prompt_rows", _int("hardware.rows"), default="6"),
    Field("cols", "prompt_cols", _int("hardware.cols"), default="10"),
    Field(
        "capacity",
        "prompt_capacity",
        _int("hardware.default_capacity"),
        default=lambda a: "1" if a.get("cabinet", "").strip().lower() == "locker" else "10",
    ),
    Field(
        "port",
        "prompt_port",
        _nonempty("hardware.port"),
        default="/dev/ttyUSB0",
    ),
    Field("baud", "prompt_baud", _int("hardware.baud"), default="115200"),
    Field(
        "broker_url",
        "prompt_broker_url",
        _nonempty("sync.broker_url"),
    ),
    Field(
        "allow_plaintext",
        None,
        _yesno("sync.allow_plaintext"),
        default="no",
        help="allow mqtt:// without TLS (demo and emulator only)",
    ),
    Field("pay_url", "prompt_pay_url", _nonempty("payments.pay_url_base")),
    Field(
        "ca_file",
        "prompt_ca_file",
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
        "prompt_province_key",
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
        "prompt_province_root_key",
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
    Field("language", "prompt_language", _choice("ui.language", "zh", "en"), default="zh"),
    Field("screen", "prompt_screen", _screen, default="1080x1920"),
    Field("data_dir", "prompt_data_dir", _data_dir, default="/var/lib/kiosk"),
    Field(
        "technician",
        "prompt_technician",
        _technician,
        default="default",
        help="the id the service PIN logs in as (every technician event carries it)",
    ),
    Field("pin", "prompt_pin", _pin, secret=True),
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
                return {}, said("area_not_anhui", area=value, problem=problem.text())
            return {}, problem.text()
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
        lines.append(said("fp_ca", fp=fp))
        want = answers.get("ca_fingerprint", "").strip().upper().replace(":", "")
        if want and want != fp.replace(":", ""):
            problems["ca_fingerprint"] = said("fingerprint_differs", what=said("what_ca"), fp=fp)
    for field, key in (
        ("province_key", "sync.province_public_key"),
        ("province_root_key", "sync.province_root_key"),
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
        lines.append(said(f"fp_{field}", fp=fp, kid=key_id(raw)))
        want = answers.get(f"{field}_fingerprint", "").strip().upper().replace(":", "")
        if want and want != fp.replace(":", ""):
            what = said(f"what_{field}")
            problems[f"{field}_fingerprint"] = said("fingerprint_differs", what=what, fp=fp)
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
        out(said("exists", file=path))
        return exitcodes.FAIL

    values = _field_values(answers, origin, base, problems, interactive, ask, ask_secret, out)
    if problems:
        out(said("not_written"))
        for p in problems:
            out(f"  {p}")
        return exitcodes.USAGE

    for _attempt in range(5):
        lines, fp_problems = _fingerprints(values, answers)
        if fp_problems:
            for name, p in fp_problems.items():
                out(said("error_at", where=_label(name, origin), problem=p))
            return exitcodes.USAGE
        for line in lines:
            out(line)
        if interactive and lines:
            confirm = ask(said("confirm_fingerprints"))
            if confirm.strip().lower() not in ("y", "yes", "是"):
                out(said("not_confirmed"))
                return exitcodes.FAIL
        kept = backup(path) if path.exists() else None
        try:
            cfg = write_config_checked(path, build_raw(values))
        except ConfigError as e:
            bad: list[str] = []
            for issue in e.issues:
                owner = KEY_OWNER.get(issue.key.partition("[")[0])
                name = _label(owner, origin) if owner else issue.key
                problem = issue.problem.text()
                out(said("config_key_problem", name=name, problem=problem, key=issue.key))
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
        out(said("wrote", file=path, kiosk_id=cfg.identity.kiosk_id))
        if kept is not None:
            out(said("kept", file=kept))
        out(said("next"))
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
        try:  # UTF-8 with or without a BOM; a GBK file or a syntax error said with its line
            data = tomllib.loads(read_text(apath))
        except TextFileError as e:  # names the file, the place and what to do
            out(say("error", error=e.message()))
            return False
        except tomllib.TOMLDecodeError as e:
            out(said("answers_unreadable", file=apath, reason=say_toml_error(e)))
            return False
        for k, v in data.items():
            if k not in BY_NAME:
                where = said("in_answers", key=k, answers=apath)
                problems.append(said("unknown_answer", where=where, known=", ".join(BY_NAME)))
                continue
            answers[k] = ",".join(map(str, v)) if isinstance(v, list) else str(v)
            if isinstance(v, bool):
                answers[k] = "yes" if v else "no"
            origin[k] = said("in_answers", key=k, answers=apath)
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
            out(say("pin_file_error", error=e))
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
                shown = said("hidden") if f.secret else repr(text)
                where = _label(f.name, origin)
                problems.append(said("answer_problem", where=where, shown=shown, problem=problem))
                continue
            out(said("field_problem", where=_label(f.name, origin), problem=problem))
        if interactive and f.prompt is not None:
            values[f.name] = _ask_until_valid(f, answers, ask, ask_secret, out)
            origin[f.name] = f.asked()
            continue
        default = f.default_for(answers)
        if default is None:
            problems.append(said("required", flag=f.flag, name=f.name))
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
        text = (ask_secret if f.secret else ask)(said("ask", prompt=f.asked(), default=shown))
        if not text.strip() and default is not None:
            text = default
        parsed, problem = check_field(f, text, Path.cwd())
        if problem is None:
            if f.secret:
                again = ask_secret(said("ask", prompt=said("prompt_pin_again"), default=""))
                if again.strip() != text.strip():
                    out(said("pins_differ"))
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
        p.add_argument(f.flag, dest=f.name, metavar="VALUE", help=(f.help or _prompt_or(f)) + extra)
    p.add_argument(
        "--pin-file",
        metavar="FILE",
        help=f"read the service PIN from the first line of FILE (or set ${ENV_PIN}; "
        "else it is asked for; never a flag value)",
    )
    p.set_defaults(func=cmd_init)


def _prompt_or(f: Field) -> str:
    return f.asked() if f.prompt is not None else f.name


def cmd_init(args: argparse.Namespace) -> int:
    try:
        return run_init(args)
    except EOFError:  # the input ended before every question was answered
        print("\n" + said("input_ended"))
        return exitcodes.USAGE

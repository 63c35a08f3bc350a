"""`kiosk-provision register`: claim the kiosk with a one-time token, or renew its certificate.

Owns: the kiosk side of the register topics. Contract (the province side is
`kiosk.sim.province_ca.ProvisioningCA.handle_request`):

  kiosk -> province  kiosk/v1/register/<kiosk_id>/request  QoS 1, not retained
    {"v":1, "kiosk_id", "nonce" (hex), "csr" (PEM, CN = kiosk id, EC P-256),
     "token" (first registration / re-registration)   -- or, to renew without a token --
     "cert" (current PEM) + "sig" (ECDSA-SHA256 over the canonical JSON without "sig")}
  province -> kiosk  kiosk/v1/register/<kiosk_id>/reply  QoS 1, not retained
    {"v":1, "ok":true, "nonce", "kiosk_id", "certificate" (PEM), "ca" (PEM), "not_after" (epoch s),
     "payment_secret" {"alg":"ECDH-P256+HKDF-SHA256+AES256GCM","epk","nonce","ct"}}
    or {"v":1, "ok":false, "nonce", "error" (code), "detail"}

Transport: before registration the kiosk has no client certificate, so the main (mutual TLS)
listener refuses it. `--bootstrap-url mqtts://host:port` names the broker's bootstrap listener
(TLS with the same CA file, server authentication only, anonymous clients may only write
`kiosk/v1/register/+/request` and read `kiosk/v1/register/+/reply`); no client certificate is
presented there. Without the flag the request goes to `sync.broker_url` with the config's TLS
settings (a broker whose main listener also carries the register topics).

The one-time token never comes from the command line (`read_token`: `--token-file`,
$KIOSK_REGISTRATION_TOKEN, or a prompt that does not echo; `--token` is refused).

On success the kiosk stores the certificate, the client CA and the payment secret (0600) beside
its key and switches the config to mutual TLS (sync.cert_file/key_file,
payments.device_secret_file). Every registration and renewal brings a NEW payment secret
(docs/payments.md, "Secret rotation and revocation"): the certificate is written before the
secret, so a crash in between leaves a current certificate that can renew again.
Never prints the key or the payment secret; never accepts a certificate that is not for its own
key and kiosk id, nor a CA that is not the one pinned at provisioning (`pinned_ca`:
sync.client_ca_fingerprint, else the CA in sync.ca_file).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import json
import os
import queue
import secrets
import ssl
import sys
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk import exitcodes
from kiosk.config import ConfigError, KioskConfig, SyncConfig
from kiosk.log import register_secret
from kiosk.sync.identity import (
    CryptoError,
    cert_cn,
    cert_fingerprint,
    csr_pem,
    load_cert,
    load_private_key,
    sign_request,
    unseal,
)
from kiosk.sync.topics import register_reply, register_request
from kiosk.textfile import os_reason, say

if TYPE_CHECKING:
    from kiosk.sync.client import BrokerAddress
from provisioning.files import command_config, update_config, write_atomic
from provisioning.keys import IdentityFiles

__all__ = [
    "RegisterError",
    "Registration",
    "add_parser",
    "build_request",
    "cert_days_left",
    "cmd_register",
    "parse_reply",
    "pinned_ca",
    "read_token",
    "store_registration",
]

RENEW_BEFORE_DAYS = 30
TOKEN_ENV = "KIOSK_REGISTRATION_TOKEN"  # the token, when not in a file nor typed at the prompt


class RegisterError(Exception):
    pass


@dataclass(frozen=True)
class Registration:
    cert_pem: bytes
    ca_pem: bytes
    payment_secret: bytes
    not_after: dt.datetime


def build_request(
    kiosk_id: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    token: str | None = None,
    current_cert_pem: bytes | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    req: dict[str, Any] = {
        "v": 1,
        "kiosk_id": kiosk_id,
        "nonce": nonce or secrets.token_hex(8),
        "csr": csr_pem(key, kiosk_id).decode(),
    }
    if token:
        req["token"] = token
    elif current_cert_pem is not None:
        req["cert"] = current_cert_pem.decode()
        req["sig"] = sign_request(req, key)
    else:
        raise RegisterError("a bootstrap token is needed (or a current certificate to renew)")
    return req


def _hex(fingerprint: str) -> str:
    return fingerprint.strip().upper().replace(":", "")


def pinned_ca(cfg: KioskConfig) -> frozenset[str]:
    """The registration CA pinned at provisioning, as SHA-256 fingerprints (64 hex digits):
    `sync.client_ca_fingerprint` when set, else every CA certificate in `sync.ca_file` (whose
    fingerprint `kiosk-provision init --ca-fingerprint` checked against the province's sheet).
    Empty when neither is configured: registration is then refused."""
    if cfg.sync.client_ca_fingerprint:
        return frozenset({_hex(cfg.sync.client_ca_fingerprint)})
    if cfg.sync.ca_file is None:
        return frozenset()
    try:
        certs = x509.load_pem_x509_certificates(cfg.sync.ca_file.read_bytes())
    except (OSError, ValueError):
        return frozenset()
    return frozenset(_hex(cert_fingerprint(c)) for c in certs)


def parse_reply(
    payload: bytes,
    nonce: str,
    key: ec.EllipticCurvePrivateKey,
    kiosk_id: str,
    *,
    pinned: Collection[str],
) -> Registration | None:
    """The registration in a reply to our request; None when the reply answers another request.
    `pinned`: the SHA-256 fingerprints of the CA pinned at provisioning (`pinned_ca`): the
    reply's CA must be one of them and must have issued the certificate; the CA is never
    trusted because the reply carries it. Raises RegisterError when the province refused or the
    reply is not acceptable."""
    try:
        reply = json.loads(payload)
    except ValueError:
        raise RegisterError("the province sent a reply that is not JSON") from None
    if not isinstance(reply, dict) or reply.get("nonce") != nonce:
        return None
    if not reply.get("ok"):
        raise RegisterError(
            f"the province refused: {reply.get('error', '?')}: {reply.get('detail', '')}"
        )
    try:
        cert = load_cert(str(reply["certificate"]).encode())
        ca = load_cert(str(reply["ca"]).encode())
        if _hex(cert_fingerprint(ca)) not in {_hex(p) for p in pinned}:
            raise RegisterError(
                f"the reply's CA (SHA-256 {cert_fingerprint(ca)}) is not the CA pinned at "
                "provisioning (sync.client_ca_fingerprint, else sync.ca_file): refused, "
                "nothing stored"
            )
        try:
            cert.verify_directly_issued_by(ca)
        except InvalidSignature:
            raise RegisterError(
                "the certificate in the reply was not issued by the pinned CA: refused"
            ) from None
        mine = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        theirs = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if mine != theirs:
            raise RegisterError("the certificate is not for this device's key")
        if cert_cn(cert) != kiosk_id:
            raise RegisterError(f"the certificate names {cert_cn(cert)!r}, not {kiosk_id!r}")
        secret = unseal(reply["payment_secret"], key, kiosk_id)
    except (KeyError, CryptoError, ValueError, TypeError) as e:
        raise RegisterError(f"unusable reply: {e}") from None
    return Registration(
        cert.public_bytes(serialization.Encoding.PEM),
        ca.public_bytes(serialization.Encoding.PEM),
        secret,
        cert.not_valid_after_utc,
    )


def store_registration(
    reg: Registration, files: IdentityFiles, config_path: Path, bootstrap_url: str | None = None
) -> KioskConfig:
    write_atomic(files.cert, reg.cert_pem, 0o644)
    write_atomic(files.client_ca, reg.ca_pem, 0o644)
    write_atomic(files.secret, reg.payment_secret, 0o600)
    return update_config(
        config_path,
        {
            "sync.cert_file": str(files.cert),
            "sync.key_file": str(files.key),
            "payments.device_secret_file": str(files.secret),
            **({"sync.bootstrap_url": bootstrap_url} if bootstrap_url else {}),
        },
    )


def cert_days_left(cert_path: Path, now: dt.datetime | None = None) -> float | None:
    try:
        cert = load_cert(cert_path.read_bytes())
    except (OSError, CryptoError):
        return None
    now = now or dt.datetime.now(dt.UTC)
    return (cert.not_valid_after_utc - now).total_seconds() / 86400


# --- MQTT round trip ------------------------------------------------------------------------


def exchange(
    cfg: KioskConfig,
    request: dict[str, Any],
    *,
    token: str | None,
    timeout: float,
    bootstrap_url: str | None = None,
) -> list[bytes]:
    """Publish the request and collect replies until one matches or `timeout` (paho, blocking).
    `bootstrap_url`: connect there (same CA file, no client certificate) instead of
    `sync.broker_url`."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    kiosk_id = cfg.identity.kiosk_id
    sync, addr, ctx = _broker(cfg, bootstrap_url)
    replies: queue.Queue[bytes] = queue.Queue()
    subscribed = queue.Queue[str]()  # "" = subscribed, else why not
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"register-{kiosk_id}-{secrets.token_hex(3)}",
        protocol=mqtt.MQTTv5,
    )
    if ctx is not None:
        client.tls_set_context(ctx)
    if token:
        client.username_pw_set(kiosk_id, token)  # a broker auth plugin may check it too

    def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            subscribed.put(f"the broker refused the connection: {rc}")
        else:
            c.subscribe(register_reply(kiosk_id), qos=1)

    def on_subscribe(_c: Any, _u: Any, _m: Any, rcs: Any, _p: Any = None) -> None:
        bad = [str(r) for r in rcs if getattr(r, "is_failure", False)]
        subscribed.put(
            f"the broker refused the reply subscription: {', '.join(bad)}" if bad else ""
        )

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        replies.put(bytes(msg.payload))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(addr.host, addr.port, keepalive=30)
    except (OSError, ssl.SSLError) as e:
        raise RegisterError(f"cannot reach the broker {sync.broker_url}: {e}") from None
    client.loop_start()
    out: list[bytes] = []
    try:
        try:
            why = subscribed.get(timeout=timeout)
        except queue.Empty:
            raise RegisterError(
                f"no subscription to the reply topic within {timeout:g} s"
            ) from None
        if why:
            raise RegisterError(why)
        client.publish(register_request(kiosk_id), json.dumps(request), qos=1)
        out = _collect(replies, request["nonce"], timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return out


def _broker(
    cfg: KioskConfig, bootstrap_url: str | None
) -> tuple[SyncConfig, BrokerAddress, ssl.SSLContext | None]:
    """The sync settings to connect with (`bootstrap_url`: there, no client certificate), the
    broker's address and the TLS context (None: plaintext)."""
    from kiosk.sync.client import SyncConfigError, broker_address, tls_context

    sync = cfg.sync
    if bootstrap_url:
        sync = dataclasses.replace(sync, broker_url=bootstrap_url, cert_file=None, key_file=None)
    try:
        addr = broker_address(sync)
        return sync, addr, tls_context(sync) if addr.tls else None
    except SyncConfigError as e:
        raise RegisterError(str(e)) from None


def _collect(replies: queue.Queue[bytes], nonce: Any, timeout: float) -> list[bytes]:
    """Replies until one carries `nonce` or `timeout` runs out (parse_reply judges them all)."""
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(replies.get(timeout=left))
        except queue.Empty:
            break
        try:
            if json.loads(out[-1]).get("nonce") == nonce:
                break
        except (ValueError, AttributeError):
            continue  # parse_reply judges it
    return out


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("register", help="claim the kiosk with a one-time token, or renew")
    p.add_argument("--config", metavar="PATH")
    p.add_argument("--dir", metavar="DIR", help="identity files (default: the config's directory)")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the one-time token from the province (its first line). Without "
        f"it: ${TOKEN_ENV}, else the token is asked for (not shown; or read from standard "
        "input when that is not a terminal)",
    )
    g.add_argument("--renew", action="store_true", help="renew the certificate (no token)")
    # refused: a token on the command line is seen by every user (ps, /proc) and kept in the
    # shell's history
    p.add_argument("--token", help=argparse.SUPPRESS)
    p.add_argument(
        "--if-expiring-days",
        type=float,
        metavar="D",
        help=f"with --renew: do nothing unless the certificate expires within D days "
        f"(e.g. {RENEW_BEFORE_DAYS}, for a timer)",
    )
    p.add_argument(
        "--bootstrap-url",
        metavar="URL",
        help="the broker's registration listener, mqtts://host:port (TLS with the config's CA "
        "file, no client certificate); default: the config's sync.bootstrap_url, else "
        "sync.broker_url. Recorded in the config after a successful registration",
    )
    p.add_argument("--timeout", type=float, default=30.0, metavar="S")
    p.set_defaults(func=cmd_register)


def read_token(
    token_file: str | None,
    *,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    ask: Callable[[str], str] = getpass.getpass,
) -> str:
    """The one-time registration token, never from the command line: the first line of
    `token_file` ("-": standard input), else ${TOKEN_ENV}, else asked for (not echoed) on a
    terminal or read as one line from a piped standard input. Raises RegisterError."""
    env = os.environ if environ is None else environ
    stdin = stdin or sys.stdin
    if token_file is not None:
        try:
            text = stdin.read() if token_file == "-" else Path(token_file).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            why = os_reason(e) if isinstance(e, OSError) else say("not_utf8_short")
            raise RegisterError(say("token_file_unreadable", file=token_file, reason=why)) from None
        where = f"the token file {token_file}"
    elif env.get(TOKEN_ENV):
        text, where = env[TOKEN_ENV], f"${TOKEN_ENV}"
    elif stdin.isatty():
        text, where = ask("One-time registration token 一次性注册码: "), "the prompt"
    else:
        text, where = stdin.readline(), "standard input"
    token = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not token:
        raise RegisterError(f"no registration token in {where}")
    register_secret(token)  # never in a log line (kiosk.log.redact)
    return token


def cmd_register(args: argparse.Namespace) -> int:
    if args.token is not None:
        print(
            "error: --token is refused: a token on the command line is visible to every user "
            f"(ps) and kept in shell history. Use --token-file PATH, ${TOKEN_ENV}, or let "
            "register ask for it"
        )
        return exitcodes.USAGE
    loaded = command_config(args.config)
    if loaded is None:
        return exitcodes.USAGE
    path, cfg = loaded
    files = IdentityFiles(Path(args.dir) if args.dir else path.parent)
    try:
        key = load_private_key(files.key.read_bytes())
    except (OSError, CryptoError):
        print(say("no_device_key", file=files.key))
        return exitcodes.USAGE
    kiosk_id = cfg.identity.kiosk_id
    current = None
    if args.renew:
        if not files.cert.exists():
            print(say("nothing_to_renew"))
            return exitcodes.USAGE
        days = cert_days_left(files.cert)
        if args.if_expiring_days is not None and days is not None and days > args.if_expiring_days:
            print(f"certificate valid for {days:.0f} more days: no renewal needed")
            return exitcodes.OK
        current = files.cert.read_bytes()
    try:
        token = None if args.renew else read_token(args.token_file)
    except RegisterError as e:
        print(say("error", error=e))
        return exitcodes.USAGE
    pinned = pinned_ca(cfg)
    if not pinned:
        print(say("no_pinned_ca"))
        return exitcodes.USAGE
    req = build_request(kiosk_id, key, token=token, current_cert_pem=current)
    bootstrap_url = args.bootstrap_url or cfg.sync.bootstrap_url or None
    try:
        for payload in exchange(
            cfg, req, token=token, timeout=args.timeout, bootstrap_url=bootstrap_url
        ):
            reg = parse_reply(payload, req["nonce"], key, kiosk_id, pinned=pinned)
            if reg is not None:
                break
        else:
            raise RegisterError(
                f"no reply from the province within {args.timeout:g} s "
                "(is the province service / `kiosk province-sim` running?)"
            )
        store_registration(reg, files, path, bootstrap_url)
    except (RegisterError, ConfigError) as e:
        print(say("registration_failed", error=e))
        return exitcodes.FAIL
    print(f"registered {kiosk_id}: certificate {files.cert}")
    print(f"certificate SHA-256: {cert_fingerprint(load_cert(reg.cert_pem))}")
    print(f"valid until: {reg.not_after:%Y-%m-%d %H:%M} UTC")
    print(f"payment secret stored in {files.secret} (mode 0600); config switched to mutual TLS")
    print("restart the kiosk now (systemctl restart kiosk): the payment secret is new, the old")
    print("one works at the province only for orders already on screen (docs/payments.md)")
    return exitcodes.OK

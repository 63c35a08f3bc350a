"""`kiosk province-sim`: run the province simulator, or print what it has recorded.

Owns: argument parsing for `province-sim run` (default), `province-sim report` (`--reconcile`:
kiosk/sim/province_reconcile.py), `province-sim sign-csr`, `province-sim issue-token`,
`province-sim revoke` (kiosk/sim/province_revoke.py) and `province-sim rotate-keys` (a
root-signed key set: kiosk.sim.province_keys), and signal handling. `run` also answers
registrations (`kiosk/v1/register/+/request`) with the CA in `<data-dir>/ca` (the CA the broker
must trust for client certificates); tokens and registrations live in
`<data-dir>/provisioning/registrations.db`. Behaviour lives in kiosk.sim.province and
kiosk.sim.paypage. The lead wires `register()` into kiosk/cli.py;
`python -m kiosk.sim.cli_province ...` runs it standalone.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from kiosk import exitcodes

__all__ = [
    "DEFAULT_DATA_DIR",
    "cmd_issue_token",
    "cmd_report",
    "cmd_revoke",
    "cmd_rotate_keys",
    "cmd_run",
    "cmd_sign_csr",
    "main",
    "open_provisioning_ca",
    "register",
]

DEFAULT_DATA_DIR = Path("~/.local/share/kiosk-province-sim")
DEMO_KIOSK = "AH-340100-0001"
DEMO_SECRET = Path(__file__).resolve().parent.parent / "data" / "demo-device-secret"
CA_DIR = "ca"  # kiosk.sim.province.ProvinceCA: ca.key + ca.crt
PROVISIONING_DIR = "provisioning"  # kiosk.sim.province_ca.ProvisioningCA: tokens, registrations
DEFAULT_RECONCILE_S = 24 * 3600.0


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common_parent: argparse.ArgumentParser,
) -> None:
    """Add `province-sim` (actions: run, report, sign-csr, issue-token, rotate-keys) to the
    kiosk command."""
    p = subparsers.add_parser(
        "province-sim",
        help="run the province simulator (broker peer, payment page) or print its report",
        parents=[common_parent],
        description="The kiosk's province peer for demos and tests (see kiosk/sim/province.py).",
    )
    p.set_defaults(func=cmd_run)
    _data_dir_arg(p)
    _run_args(p)
    sub = p.add_subparsers(dest="province_command", metavar="ACTION")
    run = sub.add_parser("run", help="connect, store events, ack, serve the pay page (default)")
    _data_dir_arg(run)
    _run_args(run)
    run.set_defaults(func=cmd_run)
    rep = sub.add_parser("report", help="sales by product, county and kiosk; chain check")
    _data_dir_arg(rep)
    rep.add_argument("--json", action="store_true", help="machine-readable output")
    rep.add_argument(
        "--reconcile",
        action="store_true",
        help="match every sale to a payment instead (raises the alarms it finds)",
    )
    rep.add_argument(
        "--reconcile-after",
        type=float,
        default=DEFAULT_RECONCILE_S,
        metavar="S",
        help="an offline-code sale without a payment this long after it arrived is an alarm "
        "(default 24 h)",
    )
    rep.set_defaults(func=cmd_report)
    csr = sub.add_parser("sign-csr", help="issue a kiosk client certificate (provisioning CA)")
    _data_dir_arg(csr)
    csr.add_argument("csr", type=Path, help="the kiosk's certificate signing request (PEM)")
    csr.add_argument("--kiosk-id", required=True, help="must equal the CSR's common name")
    csr.add_argument("--out", type=Path, required=True, help="certificate file to write")
    csr.set_defaults(func=cmd_sign_csr)
    tok = sub.add_parser(
        "issue-token", help="print a one-time registration token for `kiosk-provision register`"
    )
    _data_dir_arg(tok)
    tok.add_argument("kiosk_id", metavar="KIOSK_ID", help="the kiosk that may use it")
    tok.add_argument(
        "--ttl", type=float, default=7 * 86400.0, metavar="S", help="valid for S seconds (7 days)"
    )
    tok.set_defaults(func=cmd_issue_token)
    _rotate_parser(sub)
    _revoke_parser(sub)


def _rotate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rot = sub.add_parser(
        "rotate-keys",
        help="new signing key: the root key signs the new key set (published retained)",
        description="One step (default): the set {new}. Two steps: --keep-old publishes "
        "{old, new}; later --retire-old publishes {current}. Restart a running `run` after it "
        "(it keeps signing with the key it loaded) and re-publish retained state.",
    )
    _data_dir_arg(rot)
    _broker_args(rot)
    how = rot.add_mutually_exclusive_group()
    how.add_argument("--keep-old", action="store_true", help="publish {old, new} (step 1 of 2)")
    how.add_argument("--retire-old", action="store_true", help="publish {current} (step 2 of 2)")
    rot.set_defaults(func=cmd_rotate_keys)


def _revoke_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rev = sub.add_parser(
        "revoke",
        help="decommission a kiosk: revoke its certificates (CRL), kill its payment secret",
    )
    _data_dir_arg(rev)
    rev.add_argument("kiosk_id", metavar="KIOSK_ID")
    rev.add_argument(
        "--crl-out",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="also write the CRL here, e.g. the broker's crlfile (always: <data-dir>/ca/ca.crl)",
    )
    rev.add_argument(
        "--also-cert",
        type=Path,
        action="append",
        default=[],
        metavar="PEM",
        help="a certificate of this kiosk issued outside the registration book (repeatable)",
    )
    rev.add_argument(
        "--broker-pid", type=int, metavar="PID", help="send the broker SIGHUP (re-read the CRL)"
    )
    rev.add_argument(
        "--kick",
        metavar="URL",
        help="cut the kiosk's live connection: mqtts:// backend listener, with --ca/--cert/--key",
    )
    rev.add_argument("--ca", type=Path, help="broker CA certificate (for --kick)")
    rev.add_argument("--cert", type=Path, help="province backend client certificate (--kick)")
    rev.add_argument("--key", type=Path, help="its private key (--kick)")
    rev.set_defaults(func=cmd_revoke)


def _data_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"where province.db, keys and the CA live (default {DEFAULT_DATA_DIR})",
    )


def _run_args(p: argparse.ArgumentParser) -> None:
    _broker_args(p)
    p.add_argument(
        "--kiosk",
        action="append",
        default=argparse.SUPPRESS,
        metavar="ID=SECRET_FILE",
        help="a kiosk and its device secret file (repeatable; default: the demo kiosk)",
    )
    p.add_argument("--http-port", type=int, default=argparse.SUPPRESS, help="pay page port")
    p.add_argument("--no-http", action="store_true", default=argparse.SUPPRESS)
    p.add_argument(
        "--reconcile-after",
        type=float,
        default=argparse.SUPPRESS,
        metavar="S",
        help="reconciliation grace for offline-code sales (default 24 h; swept every minute)",
    )
    p.add_argument(
        "--publish-demo-catalog",
        action="store_true",
        default=argparse.SUPPRESS,
        help="publish the demo catalog, signed, at start",
    )


def _broker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", default=argparse.SUPPRESS, help="mqtt(s)://host:port")
    p.add_argument("--mqtt-version", choices=("5", "3.1.1"), default=argparse.SUPPRESS)
    p.add_argument("--ca", type=Path, default=argparse.SUPPRESS, help="broker CA certificate")
    p.add_argument("--cert", type=Path, default=argparse.SUPPRESS, help="province client cert")
    p.add_argument("--key", type=Path, default=argparse.SUPPRESS, help="its private key")
    p.add_argument(
        "--allow-plaintext",
        action="store_true",
        default=argparse.SUPPRESS,
        help="allow mqtt:// to a non-loopback broker (loopback is always allowed: demo)",
    )


def _opt(args: argparse.Namespace, name: str, default: Any) -> Any:
    return getattr(args, name, default)


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(_opt(args, "data_dir", DEFAULT_DATA_DIR)).expanduser()


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _broker(args: argparse.Namespace, client_id: str = "province-sim") -> Any:
    """The BrokerSettings of the command line, or a message saying what is wrong."""
    from kiosk.sim.province import BrokerSettings

    url = _opt(args, "broker", "mqtt://127.0.0.1:1883")
    broker = BrokerSettings(
        url=url,
        ca_file=_opt(args, "ca", None),
        cert_file=_opt(args, "cert", None),
        key_file=_opt(args, "key", None),
        allow_plaintext=bool(_opt(args, "allow_plaintext", False)) or _is_loopback(url),
        mqtt_version=_opt(args, "mqtt_version", "5"),
        client_id=client_id,
    )
    try:
        broker.address()
    except ValueError as e:
        return str(e)
    return broker


def _kiosk_secrets(args: argparse.Namespace) -> dict[str, bytes] | str:
    from kiosk.sim.province import load_device_secret

    specs: list[str] = _opt(args, "kiosk", [])
    out: dict[str, bytes] = {}
    config_path = _opt(args, "config", None)
    if config_path:
        from kiosk.config import ConfigError, load_config

        try:
            cfg = load_config(config_path)
        except ConfigError as e:
            return f"{config_path}: {e}"
        if cfg.payments.device_secret_file is not None:
            out[cfg.identity.kiosk_id] = load_device_secret(cfg.payments.device_secret_file)
    for spec in specs:
        kid, sep, path = spec.partition("=")
        if not sep or not kid or not path:
            return f"--kiosk wants ID=SECRET_FILE, got {spec!r}"
        try:
            out[kid] = load_device_secret(path)
        except OSError as e:
            return f"cannot read the device secret of {kid}: {e}"
    if not out:
        out[DEMO_KIOSK] = load_device_secret(DEMO_SECRET)
    return out


def open_provisioning_ca(data_dir: Path) -> Any:
    """The registration authority of `data_dir`, signing with the CA in `<data_dir>/ca`."""
    from kiosk.sim.province import ProvinceCA
    from kiosk.sim.province_ca import ProvisioningCA

    ca = ProvinceCA.load_or_create(data_dir / CA_DIR)
    return ProvisioningCA(data_dir / PROVISIONING_DIR, ca_key=ca.key, ca_cert=ca.cert)


def _key_fingerprint(pem_path: Path) -> str:
    """The fingerprint `kiosk-provision init --province-key-fingerprint` checks."""
    from cryptography.hazmat.primitives import serialization

    from kiosk.sync.identity import public_key_fingerprint

    spki = serialization.load_pem_public_key(pem_path.read_bytes()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public_key_fingerprint(spki)


def _demo_catalog_content(add_image: Any = None) -> dict[str, Any]:
    """The demo catalog as the province publishes it: with `add_image` (the simulator's), each
    product's picture is registered and referred to by its SHA-256, the only image ref a kiosk
    accepts from the network."""
    from kiosk.sim.demo_data import _png_bytes, demo_catalog
    from kiosk.ui.placeholders import render_product_image

    products = []
    for p in demo_catalog():
        d = {k: (v.value if hasattr(v, "value") else v) for k, v in dataclasses.asdict(p).items()}
        if add_image is not None:
            d["image_ref"] = add_image(_png_bytes(render_product_image(p)))
        products.append(d)
    return {"products": products}


def cmd_run(args: argparse.Namespace) -> int:
    from kiosk.log import setup_logging
    from kiosk.sim.paypage import DEFAULT_PORT, PayPageServer
    from kiosk.sim.province import (
        PUBLIC_KEY_FILE,
        ProvinceSimulator,
        load_or_create_signing_key,
    )
    from kiosk.sim.province_keys import ROOT_PUBLIC_FILE, load_or_create_root_key

    setup_logging("debug" if _opt(args, "verbose", 0) else "info")
    url = _opt(args, "broker", "mqtt://127.0.0.1:1883")
    secrets = _kiosk_secrets(args)
    if isinstance(secrets, str):
        print(secrets, file=sys.stderr)
        return exitcodes.USAGE
    data_dir = _data_dir(args)
    broker = _broker(args)
    if isinstance(broker, str):
        print(f"province-sim: {broker}", file=sys.stderr)
        return exitcodes.USAGE
    key = load_or_create_signing_key(data_dir)
    root = load_or_create_root_key(data_dir)
    registrar = open_provisioning_ca(data_dir)
    sim = ProvinceSimulator(
        broker,
        data_dir,
        secrets,
        key,
        provisioning_ca=registrar,
        reconcile_after_s=_opt(args, "reconcile_after", DEFAULT_RECONCILE_S),
        root_key=root,
    )
    page: PayPageServer | None = None
    if not _opt(args, "no_http", False):
        try:
            # the simulator's own dict: kiosks registered while running are added to it
            page = PayPageServer(
                sim.device_secrets, sim.confirm_payment, port=_opt(args, "http_port", DEFAULT_PORT)
            )
        except OSError as e:
            print(f"province-sim: cannot serve the pay page: {e}", file=sys.stderr)
            return exitcodes.FAIL
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sim.start()
    if page is not None:
        page.start()
    print(f"province-sim: broker {url}, data {data_dir}", flush=True)
    print(
        f"  province public key: {data_dir / PUBLIC_KEY_FILE} (kid {sim.kid}) "
        f"SHA-256 {_key_fingerprint(data_dir / PUBLIC_KEY_FILE)}",
        flush=True,
    )
    print(
        f"  province root key: {data_dir / ROOT_PUBLIC_FILE} (signs key sets only; "
        f"sync.province_root_key) SHA-256 {_key_fingerprint(data_dir / ROOT_PUBLIC_FILE)}",
        flush=True,
    )
    print(f"  kiosks: {', '.join(sorted(sim.device_secrets))}", flush=True)
    print(
        f"  registration CA: {data_dir / CA_DIR / 'ca.crt'} (the broker must trust it for "
        "client certificates); tokens: `kiosk province-sim issue-token KIOSK_ID`",
        flush=True,
    )
    if page is not None:
        print(f"  pay page: {page.url}", flush=True)
    if _opt(args, "publish_demo_catalog", False):
        if sim.wait_connected(10):
            v = sim.publish_catalog(_demo_catalog_content(sim.add_image))
            print(f"  published demo catalog v{v}", flush=True)
        else:
            print("  not connected: demo catalog not published", file=sys.stderr)
    try:
        done.wait()
    finally:
        if page is not None:
            page.stop()
        sim.stop()
        registrar.close()
    return exitcodes.OK


def cmd_report(args: argparse.Namespace) -> int:
    from kiosk.sim.province import DB_FILENAME, chain_reports, open_db, sales_report

    data_dir = _data_dir(args)
    if not (data_dir / DB_FILENAME).exists():
        print(
            f"province-sim: no {DB_FILENAME} in {data_dir} (run the simulator first)",
            file=sys.stderr,
        )
        return exitcodes.FAIL
    if _opt(args, "reconcile", False):
        return _report_reconcile(args, data_dir)
    db = open_db(data_dir)
    try:
        sales = sales_report(db)
        chains = chain_reports(db)
        alarms = db.execute(
            "SELECT kiosk_id, kind, detail FROM province_alarms ORDER BY id"
        ).fetchall()
    finally:
        db.close()
    if _opt(args, "json", False):
        print(
            json.dumps(
                {
                    "sales": dataclasses.asdict(sales),
                    "chains": [
                        {
                            "kiosk_id": c.kiosk_id,
                            "records": c.records,
                            "received": c.received,
                            "duplicates": c.duplicates,
                            "outbox_gaps": c.outbox_gaps,
                            "problems": [
                                {"seq": p.seq, "kind": p.kind.value, "detail": p.detail}
                                for p in c.problems
                            ],
                        }
                        for c in chains
                    ],
                    "province_alarms": [
                        {"kiosk_id": k, "kind": t, "detail": d} for k, t, d in alarms
                    ],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        print(sales.format())
        print("Ledger chain check / 账本校验")
        for c in chains:
            state = "OK" if c.ok else f"{len(c.problems)} problem(s)"
            print(
                f"  {c.kiosk_id:<20} {c.records:>6} sale records  {state}  "
                f"(received {c.received}, duplicates dropped {c.duplicates})"
            )
            for p in c.problems[:20]:
                print(f"    seq {p.seq}: {p.kind.value} {p.detail}")
            if c.outbox_gaps:
                gaps = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in c.outbox_gaps[:10])
                print(f"    outbox seq gaps (dropped LOW/NORMAL or not yet received): {gaps}")
        if alarms:
            print("Province alarms / 省平台告警")
            for k, t, d in alarms:
                print(f"  {k:<20} {t}: {d}")
    return exitcodes.OK if all(c.ok for c in chains) and not alarms else exitcodes.FAIL


def _revoked_kiosks(data_dir: Path) -> dict[str, float]:
    """The revocations of `data_dir`'s registration book (none if there is no book)."""
    import sqlite3

    path = data_dir / PROVISIONING_DIR / "registrations.db"
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT kiosk_id, revoked_at FROM revoked_kiosks").fetchall()
    except sqlite3.OperationalError:
        rows = []  # a book from before revocations existed
    finally:
        conn.close()
    return {k: float(t) for k, t in rows}


def _report_reconcile(args: argparse.Namespace, data_dir: Path) -> int:
    """`report --reconcile`: every sale against the payments; new alarms are recorded."""
    import time

    from kiosk.sim.province import open_db
    from kiosk.sim.province_reconcile import raise_alarms, reconcile

    if args.reconcile_after < 0:
        print("province-sim report: --reconcile-after must be >= 0", file=sys.stderr)
        return exitcodes.USAGE
    db = open_db(data_dir)
    try:
        rep = reconcile(db, time.time(), args.reconcile_after, _revoked_kiosks(data_dir))
        raise_alarms(db, rep)
    finally:
        db.close()
    if _opt(args, "json", False):
        print(json.dumps(rep.to_json(), ensure_ascii=False, indent=2))
    else:
        print(rep.format())
        for m in rep.alarms:
            print(f"ALARM {m.kiosk_id} {m.order_id}: {m.status}")
    return exitcodes.FAIL if rep.alarms else exitcodes.OK


def cmd_revoke(args: argparse.Namespace) -> int:
    """Decommission KIOSK_ID (kiosk/sim/province_revoke.py); prints what it did."""
    from cryptography import x509

    from kiosk.config import KIOSK_ID_RE
    from kiosk.sim.province import BrokerSettings
    from kiosk.sim.province_revoke import kick_client, reload_broker, revoke_kiosk

    if not KIOSK_ID_RE.match(args.kiosk_id):
        print(f"province-sim revoke: not a kiosk id: {args.kiosk_id!r}", file=sys.stderr)
        return exitcodes.USAGE
    if args.kick and not (args.ca and args.cert and args.key):
        print("province-sim revoke: --kick needs --ca, --cert and --key", file=sys.stderr)
        return exitcodes.USAGE
    data_dir = _data_dir(args)
    registrar = open_provisioning_ca(data_dir)
    try:
        extra = [x509.load_pem_x509_certificate(p.read_bytes()) for p in args.also_cert]
        done = revoke_kiosk(
            registrar, args.kiosk_id, [data_dir / CA_DIR / "ca.crl", *args.crl_out], extra
        )
    except (OSError, ValueError) as e:
        print(f"province-sim revoke: {e}", file=sys.stderr)
        return exitcodes.FAIL
    finally:
        registrar.close()
    print(f"revoked {done.kiosk_id}: payment secret dead, {len(done.serials)} certificate(s)")
    for path in done.crl_files:
        print(f"  CRL written: {path}")
    try:
        if args.broker_pid:
            reload_broker(args.broker_pid)
            print(f"  broker (pid {args.broker_pid}) told to re-read the CRL (SIGHUP)")
        if args.kick:
            settings = BrokerSettings(
                url=args.kick, ca_file=args.ca, cert_file=args.cert, key_file=args.key
            )
            kicked = kick_client(settings, args.kiosk_id)
            print(f"  live connection cut: {'yes' if kicked else 'NO (broker refused)'}")
    except (OSError, ValueError) as e:
        print(f"province-sim revoke: {e}", file=sys.stderr)
        return exitcodes.FAIL
    if not args.broker_pid:
        print("  next: make the broker re-read the CRL (Mosquitto: SIGHUP; docs/broker.md)")
    if not args.kick:
        print("  next: cut the kiosk's live connection (--kick, or restart the broker)")
    return exitcodes.OK


def cmd_sign_csr(args: argparse.Namespace) -> int:
    from kiosk.sim.province import ProvinceCA

    ca = ProvinceCA.load_or_create(_data_dir(args) / "ca")
    try:
        cert = ca.sign_csr(args.csr.read_bytes(), args.kiosk_id)
    except (OSError, ValueError) as e:
        print(f"province-sim sign-csr: {e}", file=sys.stderr)
        return exitcodes.FAIL
    from cryptography import x509

    registrar = open_provisioning_ca(_data_dir(args))
    try:  # in the registration book, so `revoke` finds it
        registrar.record_cert(x509.load_pem_x509_certificate(cert), args.kiosk_id)
    finally:
        registrar.close()
    args.out.write_bytes(cert)
    print(f"wrote {args.out} (CA {ca.cert_file})")
    return exitcodes.OK


def cmd_issue_token(args: argparse.Namespace) -> int:
    """Print one one-time token for KIOSK_ID (only its hash is stored, in the data dir)."""
    from kiosk.config import KIOSK_ID_RE

    if not KIOSK_ID_RE.match(args.kiosk_id):
        print(f"province-sim issue-token: not a kiosk id: {args.kiosk_id!r}", file=sys.stderr)
        return exitcodes.USAGE
    if args.ttl <= 0:
        print("province-sim issue-token: --ttl must be > 0", file=sys.stderr)
        return exitcodes.USAGE
    registrar = open_provisioning_ca(_data_dir(args))
    try:
        token = registrar.issue_token(args.kiosk_id, ttl_s=args.ttl)
    finally:
        registrar.close()
    print(token, flush=True)
    return exitcodes.OK


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    """A new signing key, or the old one retired: a root-signed key set, published retained."""
    from kiosk.sim.province import ProvinceSimulator, load_or_create_signing_key
    from kiosk.sim.province_keys import load_or_create_root_key
    from kiosk.sync.signing import key_id

    broker = _broker(args, client_id="province-sim-keys")
    if isinstance(broker, str):
        print(f"province-sim rotate-keys: {broker}", file=sys.stderr)
        return exitcodes.USAGE
    data_dir = _data_dir(args)
    key, root = load_or_create_signing_key(data_dir), load_or_create_root_key(data_dir)
    sim = ProvinceSimulator(broker, data_dir, {}, key, root_key=root)
    sim.start()
    try:
        if not sim.wait_connected(15) or sim.key_sets is None:
            print(f"province-sim rotate-keys: cannot reach {broker.url}", file=sys.stderr)
            return exitcodes.FAIL
        old = sim.kid
        if _opt(args, "retire_old", False):
            version = sim.key_sets.publish([sim.public_key])
        else:
            _, version = sim.key_sets.rotate(keep_old=bool(_opt(args, "keep_old", False)))
        kids = ", ".join(key_id(k) for k in sim.key_sets.current)
        print(f"key set v{version} signed by the root {sim.key_sets.root_kid}: {kids}", flush=True)
        if sim.kid != old:
            print(f"signing key now {sim.kid} (was {old}); restart a running `run`", flush=True)
    finally:
        sim.stop()
    return exitcodes.OK


def main(argv: Sequence[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="kiosk", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub, common)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

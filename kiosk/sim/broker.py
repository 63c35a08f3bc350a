"""A real Mosquitto for the demo, tests and benchmarks: per-run PKI, config, ACL, a TCP proxy.

Owns: everything the demo, tests and benchmarks need from the MQTT side of the world. Never
skips: a missing `mosquitto` binary is a failure with instructions (scripts/test.sh installs it).

- `Pki`: a kiosk CA and a backend CA, a server certificate for 127.0.0.1/localhost, client
  certificates whose CN is the MQTT identity (kiosk id from the kiosk CA: `client()`; "province"
  from the backend CA: `backend_client()`), a CRL per CA (`revoke()`), all EC P-256.
- `Mosquitto`: writes mosquitto.conf + ACL into a directory, starts `mosquitto -c`, waits until
  the port accepts (with `bootstrap=True` also a second TLS listener for registration, below),
  `stop()` (SIGTERM, persistence saved), `kill()` (SIGKILL), `start()` again on
  the same port and persistence directory.
- `TcpProxy`: 127.0.0.1:port -> broker; `cut()` resets every open connection (both sides),
  `refuse(True)` closes new connections at once, to simulate a flaky province link.

The configuration comes from `mosquitto_conf()`, the one place it is written (the production
config of docs/broker.md is `production_conf()`, the same function). Listeners
(`per_listener_settings true`: each has its own `allow_anonymous` and ACL file):
- kiosk (`port`): TLS with `require_certificate true` (kiosk CA, CRL), user name = certificate
  CN, client id = user name (`use_username_as_clientid`), no anonymous; ACL (`kiosk_acl()`,
  generated from kiosk.sync.topics): a kiosk writes only its own uplink and reads only its own
  downlink and the province broadcast.
- backend (`backend_port`, `province_url`): TLS with a client certificate from the backend CA
  (`Pki.backend_client()`); user `province` has everything; optional read-only monitoring
  users (`audit_identities`, `backend_acl()`) read every topic and write none (the tests' and
  the demo's MQTT recorder, kiosk/sim/mqtt_tap.py).
- bootstrap (`bootstrap_port`, optional): TLS, server-auth only (`require_certificate false`),
  anonymous allowed ON THIS LISTENER ONLY; ACL: write `kiosk/v1/register/+/request`, read
  `kiosk/v1/register/+/reply`, nothing else. A kiosk without a certificate registers here. Reading
  another kiosk's reply leaks nothing: it holds a public certificate, the public CA and the
  payment secret sealed to that kiosk's device key. A forged request needs an unspent token.

`python -m kiosk.sim.broker --dir DIR --province-data-dir D` runs such a broker for a rehearsal
(docs/technician-guide.md section 0): PKI in DIR/pki (ca.crt, client-province.crt/.key), and the
CA key copied to D/ca so `kiosk province-sim` issues kiosk certificates this broker trusts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kiosk.sim.certs import private_key_pem, self_signed_ca
from kiosk.sync.topics import MAX_CATALOG_BYTES, PREFIX, Topics

__all__ = [
    "BACKEND_ACL",
    "BOOTSTRAP_ACL",
    "ClientCert",
    "Mosquitto",
    "MosquittoMissing",
    "Pki",
    "TcpProxy",
    "backend_acl",
    "free_port",
    "main",
]

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto")
PROVINCE_USER = "province"


class MosquittoMissing(RuntimeError):
    pass


def find_mosquitto() -> str:
    found = shutil.which("mosquitto")
    if found:
        return found
    for c in MOSQUITTO_CANDIDATES:
        if os.access(c, os.X_OK):
            return c
    raise MosquittoMissing(
        "the integration tests need a real Mosquitto broker but `mosquitto` was not found "
        f"on PATH or in {', '.join(MOSQUITTO_CANDIDATES)}. Install it: "
        "`sudo apt-get install mosquitto mosquitto-clients` (scripts/test.sh does this)."
    )


_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port() -> int:
    """A port nothing listens on now, never one this process handed out before (the kernel
    gladly returns the port it just gave, so two calls in a row could name the same one).
    Another process may still take it before it is used: `Mosquitto.start` retries then."""
    with _handed_out_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free TCP port on 127.0.0.1 after 100 tries")


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode} before listening")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            try:
                s.connect(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.02)
    raise TimeoutError(f"nothing accepted connections on 127.0.0.1:{port} within {timeout} s")


# --- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientCert:
    name: str
    cert_file: Path
    key_file: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(private_key_pem(key))
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class Pki:
    """A throwaway CA in `directory`; certificates are made on first request and cached."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        self.ca_key, self.ca_cert = self_signed_ca("kiosk test CA", now, days=2)
        self._not_before = self.ca_cert.not_valid_before_utc
        self._not_after = self.ca_cert.not_valid_after_utc
        self.ca_file = self.dir / "ca.crt"
        _write_cert(self.ca_file, self.ca_cert)
        # the province backend's client certificates come from their own CA: the backend
        # listener trusts only it, the kiosk listener only the kiosk CA (`ca_cert`)
        self.backend_ca_key, self.backend_ca_cert = self_signed_ca("kiosk test backend CA", now, 2)
        self.backend_ca_file = self.dir / "backend-ca.crt"
        _write_cert(self.backend_ca_file, self.backend_ca_cert)
        self.server_cert_file, self.server_key_file = self._issue(
            "server", "localhost", server=True
        )
        self._clients: dict[str, ClientCert] = {}
        self._backend_clients: dict[str, ClientCert] = {}
        # one CRL per client CA, empty at first (Mosquitto's `crlfile` needs one to exist)
        self.crl_file = self.dir / "ca.crl"
        self.backend_crl_file = self.dir / "backend-ca.crl"
        self._revoked: list[x509.RevokedCertificate] = []
        self._write_crl(self.crl_file, self.ca_cert, self.ca_key, [])
        self._write_crl(self.backend_crl_file, self.backend_ca_cert, self.backend_ca_key, [])

    def _write_crl(
        self,
        path: Path,
        ca_cert: x509.Certificate,
        ca_key: ec.EllipticCurvePrivateKey,
        revoked: list[x509.RevokedCertificate],
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(self._not_after)
        )
        for r in revoked:
            builder = builder.add_revoked_certificate(r)
        crl = builder.sign(ca_key, hashes.SHA256())
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        os.replace(tmp, path)

    def revoke(self, cert: ClientCert) -> None:
        """Add a kiosk certificate to the kiosk CA's CRL (`crl_file`). The broker reads the CRL
        when it starts: restart it (`Mosquitto.stop(); start()`) for the revocation to count."""
        c = x509.load_pem_x509_certificate(cert.cert_file.read_bytes())
        if c.issuer != self.ca_cert.subject:
            raise ValueError(f"{cert.name}: not issued by the kiosk CA")
        self._revoked.append(
            x509.RevokedCertificateBuilder()
            .serial_number(c.serial_number)
            .revocation_date(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
            .build()
        )
        self._write_crl(self.crl_file, self.ca_cert, self.ca_key, self._revoked)

    def _issue(
        self,
        stem: str,
        cn: str,
        *,
        server: bool,
        ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    ) -> tuple[Path, Path]:
        issuer_cert, issuer_key = ca or (self.ca_cert, self.ca_key)
        key = _key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(issuer_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(issuer_key, hashes.SHA256())
        cert_file, key_file = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        _write_cert(cert_file, cert)
        _write_key(key_file, key)
        return cert_file, key_file

    def client(self, name: str) -> ClientCert:
        """Client certificate with CN = `name` (the broker uses it as the user name)."""
        if name not in self._clients:
            cert_file, key_file = self._issue(f"client-{name}", name, server=False)
            self._clients[name] = ClientCert(name, cert_file, key_file)
        return self._clients[name]

    def client_public_key(self, name: str) -> ec.EllipticCurvePublicKey | None:
        """The public key of the client certificate issued to `name`, None if none was."""
        cert = self._clients.get(name)
        if cert is None:
            return None
        key = x509.load_pem_x509_certificate(cert.cert_file.read_bytes()).public_key()
        return key if isinstance(key, ec.EllipticCurvePublicKey) else None

    def backend_client(self, name: str = PROVINCE_USER) -> ClientCert:
        """Client certificate for the province backend (CN = `name`, default "province"),
        signed by the backend CA: valid on the backend listener only."""
        if name not in self._backend_clients:
            cert_file, key_file = self._issue(
                f"backend-{name}",
                name,
                server=False,
                ca=(self.backend_ca_cert, self.backend_ca_key),
            )
            self._backend_clients[name] = ClientCert(name, cert_file, key_file)
        return self._backend_clients[name]

    def rogue_client(self, name: str) -> ClientCert:
        """A client certificate with CN = `name` signed by a CA the broker does not trust."""
        rogue = Pki.__new__(Pki)
        rogue.dir = self.dir / "rogue"
        rogue.dir.mkdir(exist_ok=True)
        rogue._not_before, rogue._not_after = self._not_before, self._not_after
        rogue_key = _key()
        rogue_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue CA")])
        rogue_cert = (
            x509.CertificateBuilder()
            .subject_name(rogue_name)
            .issuer_name(rogue_name)
            .public_key(rogue_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(rogue_key, hashes.SHA256())
        )
        cert_file, key_file = rogue._issue(
            f"client-{name}", name, server=False, ca=(rogue_cert, rogue_key)
        )
        return ClientCert(name, cert_file, key_file)


# --- the broker configuration: one place, for the test broker and for production -------------

# Every packet a client may send is at most this big: the largest message in the contract (the
# province's signed catalog, 1 MiB) plus room for the fixed header, topic and properties.
# Mosquitto's `max_packet_size` is broker-wide (all listeners), so the kiosks get the same
# limit; their own messages are at most 64 KiB (topics.MAX_PAYLOAD_BYTES).
MAX_PACKET_BYTES = MAX_CATALOG_BYTES + 4096
# QoS 1 messages the broker keeps per client above those in flight (also broker-wide): the
# province's persistent session queues every kiosk's uplink while the backend restarts.
MAX_QUEUED_MESSAGES = 200_000
# A stand-in kiosk id: the ACL is generated from kiosk.sync.topics (the one place that knows
# topic names) for this id, which is then replaced by Mosquitto's `%u` (user name = CN).
_ACL_ID = "ACLKIOSKID"


def kiosk_acl(prefix: str = PREFIX) -> str:
    """The ACL of the kiosk listener: exactly what `Topics` says a kiosk publishes (write) and
    subscribes to (read), with the user name (= certificate CN = client id) as the kiosk id.

    Nothing else: no write on any downlink topic (a kiosk cannot ack itself or overwrite the
    province's retained signed `desired/*`), no read on another kiosk's tree, nothing under
    `kiosk/v1/register/` (the bootstrap listener's business), no `$SYS`."""
    t = Topics(_ACL_ID, prefix)
    own = f"{prefix}/{_ACL_ID}/"

    def pattern(access: str, topic: str) -> str:
        return f"pattern {access} " + topic.replace(own, f"{prefix}/%u/")

    lines = [
        "# Kiosk listener ACL: kiosk.sim.broker.kiosk_acl(), generated from kiosk/sync/topics.py.",
        "# %u is the user name = the certificate CN = the client id (use_username_as_clientid).",
        "# Uplink: a kiosk writes only these, its own.",
        *(pattern("write", topic) for topic in t.uplink()),
        "# Downlink and the province's broadcast: a kiosk reads only these, never writes them.",
        *(pattern("read", f) for f, _qos in t.subscriptions()),
    ]
    return "\n".join(lines) + "\n"


# The backend listener's ACL: only the province identity, and it may do everything.
BACKEND_ACL = f"""\
# Backend listener ACL: the province backend (certificate CN "{PROVINCE_USER}") has every topic.
user {PROVINCE_USER}
topic readwrite #
topic read $SYS/#
"""


def backend_acl(audit_identities: Sequence[str] = ()) -> str:
    """The backend listener's ACL: `BACKEND_ACL`, plus one read-only block per monitoring
    ("audit") identity, a backend-CA certificate CN that may read every topic and write none
    (docs/broker.md, "A monitoring account"; the tests' recorder, kiosk.sim.mqtt_tap)."""
    text = BACKEND_ACL
    for name in audit_identities:
        if not name or name == PROVINCE_USER or any(c.isspace() or c in "+#/" for c in name):
            raise ValueError(f"bad audit identity {name!r}")
        text += (
            f"# Monitoring: {name!r} reads everything and may write nothing.\n"
            f"user {name}\ntopic read #\ntopic read $SYS/#\n"
        )
    return text


# The bootstrap listener's ACL. `pattern` lines apply to every client of the listener, anonymous
# or with a user name (a registering kiosk sends its id as user name and the token as password,
# which this broker does not check: the province does).
BOOTSTRAP_ACL = """\
# Registration only: a kiosk without a client certificate sends a request and hears replies.
pattern write kiosk/v1/register/+/request
pattern read kiosk/v1/register/+/reply
"""


@dataclass(frozen=True)
class TlsFiles:
    """The files one TLS listener needs: the CA that signs its *clients'* certificates, the
    CRL of that CA, and the broker's own certificate and key."""

    cafile: Path
    crlfile: Path | None
    certfile: Path
    keyfile: Path


@dataclass(frozen=True)
class Listener:
    host: str
    port: int


def mosquitto_conf(
    *,
    kiosk: Listener,
    kiosk_tls: TlsFiles,
    kiosk_acl_file: Path,
    backend: Listener,
    backend_tls: TlsFiles,
    backend_acl_file: Path,
    bootstrap: Listener | None = None,
    bootstrap_tls: TlsFiles | None = None,
    bootstrap_acl_file: Path | None = None,
    persistence_dir: Path,
    log_lines: Sequence[str] = ("log_dest syslog",),
    autosave_interval: int = 60,
    max_inflight: int = 20,
    run_as_root: bool = False,
    extra_kiosk_conf: str = "",
) -> str:
    """mosquitto.conf for Mosquitto 2.0: the one place the broker configuration is written.

    The test broker (`Mosquitto`) and the production config in docs/broker.md
    (`python -m kiosk.sim.broker --print-config`) both come from here; only addresses, paths,
    logging and the autosave interval differ.

    - kiosk listener: mutual TLS (`require_certificate`), user name = certificate CN
      (`use_identity_as_username`), client id = user name (`use_username_as_clientid`: a
      kiosk connecting with another kiosk's client id gets its own id, so it cannot take over
      or end another kiosk's session), revoked certificates refused (`crlfile`), ACL from
      `kiosk_acl()`.
    - backend listener: mutual TLS for the province backend (its own client CA, so a kiosk
      certificate is refused there, and a province certificate is refused on the kiosk
      listener); client ids are free, so several consumers can share subscriptions.
    - bootstrap listener (optional): TLS, server auth only, registration topics only.
    """

    def tls(files: TlsFiles, *, require_certificate: bool) -> list[str]:
        lines = [
            f"cafile {files.cafile}",
            f"certfile {files.certfile}",
            f"keyfile {files.keyfile}",
        ]
        if files.crlfile is not None:
            lines.append(f"crlfile {files.crlfile}")
        lines += [
            f"require_certificate {'true' if require_certificate else 'false'}",
            "tls_version tlsv1.2",
        ]
        return lines

    lines = [
        "# Generated by kiosk.sim.broker.mosquitto_conf() (docs/broker.md). Mosquitto 2.0.",
        # as root Mosquitto would switch to user "mosquitto", who cannot read a test's tmp dir
        *(["user root"] if run_as_root else []),
        "# each listener has its own allow_anonymous, acl_file, use_username_as_clientid",
        "per_listener_settings true",
        "persistence true",
        f"persistence_location {persistence_dir}/",
        f"autosave_interval {autosave_interval}",
        *log_lines,
        "connection_messages true",
        "# limits (broker-wide in Mosquitto 2.0; per client where the name says so)",
        f"max_packet_size {MAX_PACKET_BYTES}",
        f"max_inflight_messages {max_inflight}",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        "",
        "# --- kiosks: mutual TLS, identity = certificate CN = user name = client id",
        f"listener {kiosk.port} {kiosk.host}",
        "allow_anonymous false",
        f"acl_file {kiosk_acl_file}",
        *tls(kiosk_tls, require_certificate=True),
        "use_identity_as_username true",
        "use_username_as_clientid true",
        extra_kiosk_conf,
        "",
        "# --- the province backend: mutual TLS with the backend client CA",
        f"listener {backend.port} {backend.host}",
        "allow_anonymous false",
        f"acl_file {backend_acl_file}",
        *tls(backend_tls, require_certificate=True),
        "use_identity_as_username true",
    ]
    if bootstrap is not None:
        if bootstrap_tls is None or bootstrap_acl_file is None:
            raise ValueError("the bootstrap listener needs its TLS files and ACL file")
        lines += [
            "",
            "# --- registration: TLS server auth only, anonymous, register topics only",
            f"listener {bootstrap.port} {bootstrap.host}",
            "allow_anonymous true",
            f"acl_file {bootstrap_acl_file}",
            *tls(dataclasses.replace(bootstrap_tls, crlfile=None), require_certificate=False),
        ]
    out: list[str] = []
    for line in lines:  # no empty option lines; single blank lines between sections
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


PRODUCTION_DIR = Path("/etc/mosquitto")


def production_conf() -> str:
    """The production mosquitto.conf shown in docs/broker.md (a unit test keeps them equal)."""
    etc = PRODUCTION_DIR
    certs = etc / "certs"
    server = {"certfile": certs / "server.crt", "keyfile": certs / "server.key"}
    return mosquitto_conf(
        kiosk=Listener("0.0.0.0", 8883),
        kiosk_tls=TlsFiles(certs / "kiosk-ca.crt", certs / "kiosk-ca.crl", **server),
        kiosk_acl_file=etc / "acl-kiosk",
        backend=Listener("10.0.0.10", 8885),
        backend_tls=TlsFiles(certs / "backend-ca.crt", certs / "backend-ca.crl", **server),
        backend_acl_file=etc / "acl-backend",
        bootstrap=Listener("0.0.0.0", 8884),
        bootstrap_tls=TlsFiles(certs / "kiosk-ca.crt", None, **server),
        bootstrap_acl_file=etc / "acl-bootstrap",
        persistence_dir=Path("/var/lib/mosquitto"),
        log_lines=(
            "log_dest syslog",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ),
        autosave_interval=60,
        max_inflight=20,
    )


class Mosquitto:
    """One Mosquitto process on 127.0.0.1 with the configuration of `mosquitto_conf()`: the
    kiosk listener on `port`, the province backend's listener on `backend_port` (connect the
    province there, with `pki.backend_client()`: `province_url`) and, with `bootstrap=True`,
    the registration listener on `bootstrap_port`."""

    def __init__(
        self,
        directory: Path,
        pki: Pki,
        *,
        port: int | None = None,
        max_inflight: int = 20,
        tls: bool = True,
        extra_conf: str = "",
        bootstrap: bool = False,
        bootstrap_port: int | None = None,
        backend_port: int | None = None,
        audit_identities: Sequence[str] = (),
    ) -> None:
        """`bootstrap=True` (TLS only) adds the registration listener on `bootstrap_port`.
        `extra_conf` is appended to the kiosk listener's section. `tls=False` is a plain,
        anonymous, ACL-less broker on `port` (nothing in the project uses it for trust).
        `audit_identities`: backend-CA certificate CNs that may read every topic on the backend
        listener and write none (`backend_acl`; connect with `pki.backend_client(name)`)."""
        self.binary = find_mosquitto()
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pki = pki
        self.port = port or free_port()
        self.tls = tls
        if bootstrap and not tls:
            raise ValueError("the bootstrap listener is a TLS listener: needs tls=True")
        self.bootstrap_port: int | None = (bootstrap_port or free_port()) if bootstrap else None
        self.backend_port: int | None = (backend_port or free_port()) if tls else None
        # Ports we chose may be taken by another process before Mosquitto binds them; start()
        # then chooses again. Ports the caller named are never changed.
        self._chosen_ports = port is None and (not bootstrap or bootstrap_port is None)
        self._chosen_ports = self._chosen_ports and (not tls or backend_port is None)
        self._max_inflight = max_inflight
        self._extra_conf = extra_conf
        self._audit_identities = tuple(audit_identities)
        self.persist_dir = self.dir / "persist"
        self.persist_dir.mkdir(exist_ok=True)
        self.log_file = self.dir / "mosquitto.log"
        self.acl_file = self.dir / "acl-kiosk"
        self.backend_acl_file = self.dir / "acl-backend"
        self.bootstrap_acl_file = self.dir / "acl-bootstrap"
        self.conf_file = self.dir / "mosquitto.conf"
        self._write_conf()
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_conf(self) -> None:
        pki, tls = self.pki, self.tls
        max_inflight, extra_conf = self._max_inflight, self._extra_conf
        audit_identities = self._audit_identities
        log_lines = (
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        )
        if tls:
            assert self.backend_port is not None
            self.acl_file.write_text(kiosk_acl())
            self.backend_acl_file.write_text(backend_acl(audit_identities))
            server = {"certfile": pki.server_cert_file, "keyfile": pki.server_key_file}
            kiosk_tls = TlsFiles(pki.ca_file, pki.crl_file, **server)
            if self.bootstrap_port is not None:
                self.bootstrap_acl_file.write_text(BOOTSTRAP_ACL)
            conf = mosquitto_conf(
                kiosk=Listener("127.0.0.1", self.port),
                kiosk_tls=kiosk_tls,
                kiosk_acl_file=self.acl_file,
                backend=Listener("127.0.0.1", self.backend_port),
                backend_tls=TlsFiles(pki.backend_ca_file, pki.backend_crl_file, **server),
                backend_acl_file=self.backend_acl_file,
                bootstrap=(
                    Listener("127.0.0.1", self.bootstrap_port)
                    if self.bootstrap_port is not None
                    else None
                ),
                bootstrap_tls=kiosk_tls,
                bootstrap_acl_file=self.bootstrap_acl_file,
                persistence_dir=self.persist_dir,
                log_lines=log_lines,
                autosave_interval=1,
                max_inflight=max_inflight,
                run_as_root=os.geteuid() == 0,
                extra_kiosk_conf=extra_conf,
            )
        else:
            conf = "\n".join(
                x
                for x in [
                    "user root" if os.geteuid() == 0 else "",
                    "persistence true",
                    f"persistence_location {self.persist_dir}/",
                    "autosave_interval 1",
                    *log_lines,
                    f"max_packet_size {MAX_PACKET_BYTES}",
                    f"max_inflight_messages {max_inflight}",
                    f"max_queued_messages {MAX_QUEUED_MESSAGES}",
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    extra_conf,
                ]
                if x
            )
            conf += "\n"
        self.conf_file.write_text(conf)

    @staticmethod
    def version() -> str:
        out = subprocess.run([find_mosquitto(), "-h"], capture_output=True, text=True)
        return (out.stdout or out.stderr).splitlines()[0].strip()

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def province_url(self) -> str:
        """Where the province backend connects (with `pki.backend_client()`)."""
        if self.backend_port is None:
            return self.url
        return f"mqtts://127.0.0.1:{self.backend_port}"

    @property
    def bootstrap_url(self) -> str:
        """The registration listener (TLS, no client certificate): `kiosk-provision register
        --bootstrap-url`."""
        if self.bootstrap_port is None:
            raise RuntimeError("this broker has no bootstrap listener (bootstrap=True)")
        return f"mqtts://127.0.0.1:{self.bootstrap_port}"

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        for attempt in range(3):
            try:
                self._start_once(timeout)
                self._chosen_ports = False  # clients know these ports now: a restart keeps them
                return
            except RuntimeError as e:
                if not (self._chosen_ports and "Address already in use" in str(e)) or attempt == 2:
                    raise
            # Another process took one of the ports between free_port() and Mosquitto's bind.
            self.port = free_port()
            if self.backend_port is not None:
                self.backend_port = free_port()
            if self.bootstrap_port is not None:
                self.bootstrap_port = free_port()
            self._write_conf()

    def _start_once(self, timeout: float) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            wait_port(self.port, timeout, self.proc)
            if self.backend_port is not None:
                wait_port(self.backend_port, timeout, self.proc)
            if self.bootstrap_port is not None:
                wait_port(self.bootstrap_port, timeout, self.proc)
        except (RuntimeError, TimeoutError) as e:
            err = b""
            if self.proc.poll() is not None and self.proc.stderr is not None:
                err = self.proc.stderr.read()
            raise RuntimeError(
                f"mosquitto did not start: {e}\nstderr: {err.decode(errors='replace')}\n"
                f"log:\n{self.log_tail()}"
            ) from e

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Mosquitto saves its persistence database and exits."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


# --- a TCP proxy that can cut connections -----------------------------------------------------


class TcpProxy:
    """Forward 127.0.0.1:`port` to 127.0.0.1:`target_port`, byte for byte (TLS passes through).

    `cut()` resets every open connection (RST on both sides, like a dropped mobile link);
    `refuse(True)` makes new connections fail at once until `refuse(False)`.
    `bytes_up` counts client->broker bytes, so a test can cut "mid-publish".
    """

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port or 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._refuse = False
        self._closed = False
        self.connections = 0
        self.cuts = 0
        self.bytes_up = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refuse:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if up:
                    self.bytes_up += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> int:
        """Reset every open connection; returns how many were cut."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            _reset(a)
            _reset(b)
        self.cuts += len(pairs)
        return len(pairs)

    def refuse(self, on: bool) -> None:
        self._refuse = on

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()


def _reset(s: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), not a polite FIN."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RD)  # wakes the pump thread blocked in recv()
    with contextlib.suppress(OSError):
        s.close()


# --- `python -m kiosk.sim.broker`: a rehearsal broker ----------------------------------------


def export_ca(pki: Pki, directory: Path) -> None:
    """Write the PKI's CA as `directory`/ca.key (0600) + ca.crt: the layout of
    kiosk.sim.province.ProvinceCA, so the province simulator signs with the broker's CA."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_key(directory / "ca.key", pki.ca_key)
    _write_cert(directory / "ca.crt", pki.ca_cert)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m kiosk.sim.broker",
        description="A throwaway TLS Mosquitto for rehearsals: mutual-TLS main listener, "
        "bootstrap listener for registration, fresh PKI.",
    )
    p.add_argument("--dir", type=Path, help="PKI, config, ACLs, log, persistence")
    p.add_argument("--port", type=int, default=8883, help="kiosk listener (mutual TLS)")
    p.add_argument("--bootstrap-port", type=int, default=8884, help="registration listener")
    p.add_argument(
        "--backend-port", type=int, default=8885, help="province backend listener (mutual TLS)"
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the production mosquitto.conf of docs/broker.md and exit",
    )
    p.add_argument(
        "--province-data-dir",
        type=Path,
        help="also write the CA key to <dir>/ca for `kiosk province-sim --data-dir <dir>`",
    )
    args = p.parse_args(argv)
    if args.print_config:
        print(production_conf(), end="")
        return 0
    if args.dir is None:
        p.error("--dir is required")
    from kiosk.sync.identity import cert_fingerprint

    pki = Pki(args.dir / "pki")
    province = pki.backend_client(PROVINCE_USER)
    if args.province_data_dir is not None:
        export_ca(pki, args.province_data_dir / "ca")
    try:
        broker = Mosquitto(
            args.dir / "mosquitto",
            pki,
            port=args.port,
            bootstrap=True,
            bootstrap_port=args.bootstrap_port,
            backend_port=args.backend_port,
        )
        broker.start()
    except (MosquittoMissing, RuntimeError) as e:
        print(f"broker: {e}", file=sys.stderr)
        return 1
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"broker: main {broker.url} (client certificate required)", flush=True)
    print(f"  bootstrap {broker.bootstrap_url} (registration only, no client certificate)")
    print(f"  province backend {broker.province_url} (backend client certificate required)")
    print(f"  CA {pki.ca_file} SHA-256 {cert_fingerprint(pki.ca_cert)}")
    print(f"  province client cert {province.cert_file} key {province.key_file}", flush=True)
    try:
        while not done.wait(0.5):
            if not broker.running:
                print(f"broker: mosquitto exited\n{broker.log_tail()}", file=sys.stderr)
                return 1
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

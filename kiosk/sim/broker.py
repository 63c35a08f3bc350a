"""A real Mosquitto for the demo, tests and benchmarks: per-run PKI, config, ACL, a TCP proxy.

Owns: everything the demo, tests and benchmarks need from the MQTT side of the world. Never
skips: a missing `mosquitto` binary is a failure with instructions (scripts/test.sh installs it).

- `Pki`: a CA, a server certificate for 127.0.0.1/localhost and client certificates whose CN
  is the MQTT identity (kiosk id, or "province"), all EC P-256, generated with `cryptography`.
- `Mosquitto`: writes mosquitto.conf + ACL into a directory, starts `mosquitto -c`, waits until
  the port accepts (with `bootstrap=True` also a second TLS listener for registration, below),
  `stop()` (SIGTERM, persistence saved), `kill()` (SIGKILL), `start()` again on
  the same port and persistence directory.
- `TcpProxy`: 127.0.0.1:port -> broker; `cut()` resets every open connection (both sides),
  `refuse(True)` closes new connections at once, to simulate a flaky province link.

Two listeners (`per_listener_settings true`: each has its own `allow_anonymous` and ACL file):
- main (`port`): TLS with `require_certificate true`, user name = certificate CN, no anonymous;
  ACL: a kiosk reads and writes `kiosk/v1/<its id>/#`, reads `kiosk/v1/province/#`; user
  `province` has everything.
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

__all__ = [
    "BOOTSTRAP_ACL",
    "ClientCert",
    "Mosquitto",
    "MosquittoMissing",
    "Pki",
    "TcpProxy",
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        self.server_cert_file, self.server_key_file = self._issue(
            "server", "localhost", server=True
        )
        self._clients: dict[str, ClientCert] = {}

    def _issue(
        self, stem: str, cn: str, *, server: bool, ca: tuple[x509.Certificate, object] | None = None
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
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    issuer_key.public_key()  # type: ignore[attr-defined]
                ),
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
        cert = builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
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


# --- the broker -------------------------------------------------------------------------------

# The bootstrap listener's ACL. `pattern` lines apply to every client of the listener, anonymous
# or with a user name (a registering kiosk sends its id as user name and the token as password,
# which this broker does not check: the province does).
BOOTSTRAP_ACL = """\
# Registration only: a kiosk without a client certificate sends a request and hears replies.
pattern write kiosk/v1/register/+/request
pattern read kiosk/v1/register/+/reply
"""

ACL = """\
# Each kiosk (user name = certificate CN) reads and writes only its own tree.
pattern readwrite kiosk/v1/%u/#
# Every kiosk reads what the province publishes for all kiosks (catalog, prices, images).
pattern read kiosk/v1/province/#

user province
topic readwrite #
topic read $SYS/#
"""


class Mosquitto:
    """One Mosquitto process on 127.0.0.1:`port` with TLS, client certificates and the ACL."""

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
    ) -> None:
        """`bootstrap=True` (TLS only) adds the registration listener on `bootstrap_port`."""
        self.binary = find_mosquitto()
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pki = pki
        self.port = port or free_port()
        self.tls = tls
        if bootstrap and not tls:
            raise ValueError("the bootstrap listener is a TLS listener: needs tls=True")
        self.bootstrap_port: int | None = (bootstrap_port or free_port()) if bootstrap else None
        self.persist_dir = self.dir / "persist"
        self.persist_dir.mkdir(exist_ok=True)
        self.log_file = self.dir / "mosquitto.log"
        self.acl_file = self.dir / "acl"
        self.acl_file.write_text(ACL)
        self.bootstrap_acl_file = self.dir / "acl-bootstrap"
        if self.bootstrap_port is not None:
            self.bootstrap_acl_file.write_text(BOOTSTRAP_ACL)
        self.conf_file = self.dir / "mosquitto.conf"
        lines = [
            # as root Mosquitto would switch to user "mosquitto", who cannot read our tmp dir
            "user root" if os.geteuid() == 0 else "",
            # each listener its own allow_anonymous / acl_file (set after its `listener` line)
            "per_listener_settings true",
            "persistence true",
            f"persistence_location {self.persist_dir}/",
            "autosave_interval 1",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"max_inflight_messages {max_inflight}",
            "max_queued_messages 200000",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous false" if tls else "allow_anonymous true",
            f"acl_file {self.acl_file}" if tls else "",
        ]
        if tls:
            lines += [
                f"cafile {pki.ca_file}",
                f"certfile {pki.server_cert_file}",
                f"keyfile {pki.server_key_file}",
                "require_certificate true",
                "use_identity_as_username true",
                "tls_version tlsv1.2",
            ]
        lines.append(extra_conf)  # before the bootstrap listener: it applies to the main one
        if self.bootstrap_port is not None:
            lines += [
                f"listener {self.bootstrap_port} 127.0.0.1",
                "allow_anonymous true",
                f"acl_file {self.bootstrap_acl_file}",
                f"cafile {pki.ca_file}",
                f"certfile {pki.server_cert_file}",
                f"keyfile {pki.server_key_file}",
                "require_certificate false",
                "tls_version tlsv1.2",
            ]
        self.conf_file.write_text("\n".join(x for x in lines if x) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def version() -> str:
        out = subprocess.run([find_mosquitto(), "-h"], capture_output=True, text=True)
        return (out.stdout or out.stderr).splitlines()[0].strip()

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

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
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            wait_port(self.port, timeout, self.proc)
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
    p.add_argument("--dir", type=Path, required=True, help="PKI, config, ACLs, log, persistence")
    p.add_argument("--port", type=int, default=8883, help="main listener (mutual TLS)")
    p.add_argument("--bootstrap-port", type=int, default=8884, help="registration listener")
    p.add_argument(
        "--province-data-dir",
        type=Path,
        help="also write the CA key to <dir>/ca for `kiosk province-sim --data-dir <dir>`",
    )
    args = p.parse_args(argv)
    from provisioning.crypto import cert_fingerprint

    pki = Pki(args.dir / "pki")
    province = pki.client(PROVINCE_USER)
    if args.province_data_dir is not None:
        export_ca(pki, args.province_data_dir / "ca")
    try:
        broker = Mosquitto(
            args.dir / "mosquitto",
            pki,
            port=args.port,
            bootstrap=True,
            bootstrap_port=args.bootstrap_port,
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

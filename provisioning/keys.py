"""`kiosk-provision keys`: make the device key pair and the CSR on the device.

Owns: the file names of the device identity next to the config (`device-key.pem` 0600,
`device.csr`, later `device-cert.pem`, `client-ca.pem`, `device-secret`) and the refusal to
replace an existing key without --force (then the old key is kept as a backup).
The private key is never printed, logged or sent anywhere; only the CSR and fingerprints are shown.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from kiosk import exitcodes
from kiosk.sync.identity import (
    csr_pem,
    generate_device_key,
    private_key_pem,
    public_key_fingerprint,
)
from kiosk.textfile import say
from provisioning.files import backup, command_config, write_atomic

__all__ = ["IdentityFiles", "add_parser", "cmd_keys", "make_keys"]

KEY_FILE = "device-key.pem"
CSR_FILE = "device.csr"
CERT_FILE = "device-cert.pem"
CLIENT_CA_FILE = "client-ca.pem"
SECRET_FILE = "device-secret"


@dataclass(frozen=True)
class IdentityFiles:
    directory: Path

    @property
    def key(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def csr(self) -> Path:
        return self.directory / CSR_FILE

    @property
    def cert(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def client_ca(self) -> Path:
        return self.directory / CLIENT_CA_FILE

    @property
    def secret(self) -> Path:
        return self.directory / SECRET_FILE


def make_keys(kiosk_id: str, files: IdentityFiles, force: bool = False) -> str:
    """Create the key (0600) and CSR; return the public key fingerprint.
    Raises FileExistsError when a key exists and not `force`."""
    if files.key.exists() and not force:
        raise FileExistsError(str(files.key))
    if files.key.exists():
        backup(files.key)
    key = generate_device_key()
    write_atomic(files.key, private_key_pem(key), 0o600)
    write_atomic(files.csr, csr_pem(key, kiosk_id), 0o644)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public_key_fingerprint(spki)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keys", help="make the device key pair (kept on the device) and a CSR")
    p.add_argument(
        "--config",
        metavar="PATH",
        help="kiosk config (default $KIOSK_CONFIG or /etc/kiosk/kiosk.toml)",
    )
    p.add_argument(
        "--dir", metavar="DIR", help="where the key and CSR go (default: the config's directory)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing key (backup kept)")
    p.set_defaults(func=cmd_keys)


def cmd_keys(args: argparse.Namespace) -> int:
    loaded = command_config(args.config, say("hint_init_first"))
    if loaded is None:
        return exitcodes.USAGE
    path, cfg = loaded
    files = IdentityFiles(Path(args.dir) if args.dir else path.parent)
    try:
        fp = make_keys(cfg.identity.kiosk_id, files, force=args.force)
    except FileExistsError:
        print(say("key_exists", file=files.key))
        return exitcodes.FAIL
    print(f"device key: {files.key} (mode 0600, never leaves this device)")
    print(f"CSR:        {files.csr} (CN = {cfg.identity.kiosk_id})")
    print(f"public key SHA-256: {fp}")
    print("next: kiosk-provision register (it asks for the one-time token from the province)")
    return exitcodes.OK

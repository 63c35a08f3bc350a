"""The province's root key and the key sets it signs (the simulator's side of kiosk.sync.keyset).

Owns: the root key files in the province data dir (`province-root.key`, raw Ed25519 private key
in hex, mode 0600; `province-root.pem`, what a kiosk's `sync.province_root_key` points at),
publishing root-signed key sets on the retained `kiosk/v1/province/keys`, and rotating the
simulator's signing key. A real province keeps the root key offline (an HSM or an air-gapped
machine) and brings it out only to sign a key set; the simulator keeps it in its data dir.

Rotation (`KeySets.rotate`): a new signing key is made, the root signs the set {new} (or
{old, new} with `keep_old`, the first step of a two-step rotation whose second step is
`retire_all_but_current`), the set is published retained, and the simulator signs with the new
key from then on (confirmations included). A kiosk that applied the set refuses the old key at
once; nothing the old key signs can change the set, because only the root signs sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.sync.keyset import key_set_body, sign_key_set
from kiosk.sync.signing import generate_keypair, key_id, public_key_pem
from kiosk.sync.topics import PROVINCE_KEYS, encode

if TYPE_CHECKING:
    from kiosk.sim.province import ProvinceSimulator

__all__ = [
    "ROOT_KEY_FILE",
    "ROOT_PUBLIC_FILE",
    "KeySets",
    "load_or_create_root_key",
    "raw_public",
]

ROOT_KEY_FILE = "province-root.key"
ROOT_PUBLIC_FILE = "province-root.pem"  # what a kiosk's sync.province_root_key points at
SIGNING_KEY_FILE = "province-signing.key"  # kiosk.sim.province's file, replaced on rotation
PUBLIC_KEY_FILE = "province-public.pem"


def raw_public(private: bytes) -> bytes:
    return (
        Ed25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def _write_private(path: Path, private: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(private.hex() + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def load_or_create_root_key(data_dir: Path) -> bytes:
    """The province root private key (raw 32 bytes), created on first use, with its public key
    written beside it as PEM for kiosk configs (`sync.province_root_key`)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / ROOT_KEY_FILE
    if path.exists():
        raw = bytes.fromhex(path.read_text().strip())
    else:
        raw = generate_keypair()[0]
        _write_private(path, raw)
    pem = public_key_pem(raw_public(raw))
    pem_path = data_dir / ROOT_PUBLIC_FILE
    if not pem_path.exists() or pem_path.read_bytes() != pem:
        pem_path.write_bytes(pem)
    return raw


class KeySets:
    """Root-signed key sets for one simulator. `data_dir`: where a rotated signing key is
    written (`province-signing.key` / `province-public.pem`, the old key kept as
    `province-signing.<kid>.retired`); None keeps it in memory only (tests)."""

    def __init__(
        self, sim: ProvinceSimulator, root_private: bytes, data_dir: Path | None = None
    ) -> None:
        self.sim = sim
        self.root_private = root_private
        self.root_public = raw_public(root_private)
        self.root_kid = key_id(self.root_public)
        self.data_dir = data_dir
        self.current: list[bytes] = [sim.public_key]  # the set last published

    def publish(self, keys: list[bytes], version: int | None = None) -> int:
        """Sign the full set `keys` (raw public keys) with the root and publish it retained;
        returns its version (the next one unless given)."""
        v = self.sim._next_version("keys", version)  # the simulator's versions table
        body = key_set_body(v, keys, int(self.sim.clock.time()))
        self.sim.publish_raw(
            PROVINCE_KEYS, encode(sign_key_set(self.root_private, body)), retain=True
        )
        self.current = list(keys)
        return v

    def rotate(self, *, keep_old: bool = False) -> tuple[str, int]:
        """A new signing key: publish {new} (or {old, new}), then sign with it. Returns (new
        kid, key-set version)."""
        new_private, new_public = generate_keypair()
        keys = [self.sim.public_key, new_public] if keep_old else [new_public]
        version = self.publish(keys)
        old_private = self.sim.signing_key
        self.sim.use_signing_key(new_private)
        if self.data_dir is not None:
            retired = self.data_dir / f"province-signing.{key_id(raw_public(old_private))}.retired"
            _write_private(retired, old_private)
            _write_private(self.data_dir / SIGNING_KEY_FILE, new_private)
            (self.data_dir / PUBLIC_KEY_FILE).write_bytes(public_key_pem(new_public))
        return key_id(new_public), version

    def retire_all_but_current(self) -> int:
        """Second step of a two-step rotation: publish the set {the key signing now}."""
        return self.publish([self.sim.public_key])

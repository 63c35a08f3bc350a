"""The province's book of kiosk payment secrets: what the pay page and the simulator look up.

Owns: finding a kiosk's device secret by kiosk id — kiosks registered through the provisioning
CA from its database, read on every lookup (so a rotation, or `kiosk province-sim revoke` run
by another process, counts at once), the others from the secret files the simulator was started
with — and the rule for a renewed kiosk's previous secret (`verify_pay_url`): it still verifies
a pay URL that expires at most `PREVIOUS_SECRET_OVERLAP_S` after the rotation (an order shown
before it), nothing later. Must never hand out a secret of a revoked kiosk.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING

from kiosk.core.payment import PayUrlParams, parse_pay_url
from kiosk.sim.province_ca import PREVIOUS_SECRET_OVERLAP_S

if TYPE_CHECKING:
    from kiosk.sim.province_ca import ProvisioningCA

__all__ = ["SecretBook", "verify_pay_url"]


class SecretBook(MutableMapping[str, bytes]):
    """kiosk id -> current device secret (file bytes). Static entries come from secret files;
    the provisioning CA's registrations and revocations win over them."""

    def __init__(self, static: Mapping[str, bytes], ca: ProvisioningCA | None = None) -> None:
        self._static = dict(static)
        self.ca = ca

    def __getitem__(self, kiosk_id: str) -> bytes:
        if self.ca is not None:
            held = self.ca.secrets_of(kiosk_id)
            if held.revoked_at is not None:
                raise KeyError(kiosk_id)
            if held.current is not None:
                return held.current
        return self._static[kiosk_id]

    def __setitem__(self, kiosk_id: str, secret: bytes) -> None:
        self._static[kiosk_id] = secret

    def __delitem__(self, kiosk_id: str) -> None:
        del self._static[kiosk_id]

    def _ids(self) -> set[str]:
        ids = set(self._static)
        if self.ca is not None:
            ids |= set(self.ca.registered_secrets())
            ids -= set(self.ca.revoked_kiosks())
        return ids

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._ids()))

    def __len__(self) -> int:
        return len(self._ids())

    def revoked_at(self, kiosk_id: str) -> float | None:
        """When `kiosk_id` was revoked (province time), None if it is not."""
        return None if self.ca is None else self.ca.revoked_kiosks().get(kiosk_id)

    def revoked(self) -> dict[str, float]:
        return {} if self.ca is None else self.ca.revoked_kiosks()

    def previous(self, kiosk_id: str, expires_at: int) -> bytes | None:
        """The secret before the last renewal, for a pay URL expiring at `expires_at`: only
        while that is within the overlap after the rotation."""
        if self.ca is None:
            return None
        held = self.ca.secrets_of(kiosk_id)
        if held.previous is None or held.rotated_at is None:
            return None
        return held.previous if expires_at <= held.rotated_at + PREVIOUS_SECRET_OVERLAP_S else None


class _Previous(Mapping[str, bytes]):
    """The previous secrets of a book, for a second parse_pay_url (the expiry is checked after)."""

    def __init__(self, book: SecretBook) -> None:
        self.book = book

    def __getitem__(self, kiosk_id: str) -> bytes:
        held = None if self.book.ca is None else self.book.ca.secrets_of(kiosk_id)
        if held is None or held.previous is None:
            raise KeyError(kiosk_id)
        return held.previous

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def verify_pay_url(url: str, secrets: Mapping[str, bytes]) -> tuple[PayUrlParams, bytes] | None:
    """The verified URL and the secret that signed it (the offline code for the order is made
    with that one), or None. With a SecretBook a renewed kiosk's previous secret counts for
    URLs that expire within the overlap after the rotation; a revoked kiosk has no secret."""
    params = parse_pay_url(url, secrets)
    if params is not None:
        return params, secrets[params.kiosk_id]
    if not isinstance(secrets, SecretBook):
        return None
    params = parse_pay_url(url, _Previous(secrets))
    if params is None:
        return None
    old = secrets.previous(params.kiosk_id, params.expires_at)
    return None if old is None else (params, old)

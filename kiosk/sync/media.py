"""Product images addressed by SHA-256: the on-disk cache and the fetcher that fills it.

Owns: `<data_dir>/media/` (one file per image, `<sha256>.img`, raw bytes exactly as published;
`media_path` is the one place that spells the name), its size budget and LRU eviction, and the
requests for images the catalog names but the cache lacks.

The catalog (signed) names each image by its sha256 (`Product.image_ref`, 64 lowercase hex), so
an image needs no signature of its own: `topics.check_image` compares the hash of the bytes with
the topic's last level, and `MediaCache.put` checks it again before anything is written. A file
in the cache therefore always holds the bytes its name promises (written to a temporary file,
fsynced, then `os.replace`d: a crash leaves the old state or the new one, never half a file).

Must never:
- write bytes whose sha256 differs from the name they are stored under;
- evict an image the current catalog references while unreferenced ones are left to evict (only
  when those alone exceed the budget are referenced ones evicted too, least recently used first,
  and a `media.budget_too_small` warning says so);
- block the caller on the network: `MediaFetcher` only calls `publish_request` (a non-blocking
  QoS 1 publish) and is driven by `poll()` from the sync bridge's periodic thread.

Decoding is bounded: `open_bounded_image` reads only the image header (PIL `Image.open`) and
refuses, before a single pixel is decoded, anything that is not a PNG/JPEG/WebP or is wider or
taller than `MAX_IMAGE_SIDE` or has more than `MAX_IMAGE_PIXELS` pixels (a 21 KiB PNG can claim
30000x30000 and decode to ~900 MiB). `MediaCache.put` runs it before writing (`ImageRefused`,
counted in `rejected`, logged as `media.refused`; the fetcher never asks for that hash again:
the same hash is always the same bytes), `path_for` before handing out a file, and
kiosk.ui.images before every decode.

A missing image is not an error anywhere: the UI draws its placeholder tile (kiosk.ui.images).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.clock import Clock
from kiosk.log import log_event
from kiosk.sync.pacing import TokenBucket
from kiosk.sync.topics import MessageError, MessageErrorReason, check_image

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "IMAGE_FORMATS",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "MEDIA_DIR_NAME",
    "ImageRefused",
    "MediaCache",
    "MediaFetcher",
    "check_image_bounds",
    "media_dir",
    "media_path",
    "open_bounded_image",
    "sha_of_ref",
]

log = logging.getLogger("kiosk.sync.media")

MEDIA_DIR_NAME = "media"
DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024  # 256 images at the 256 KiB limit
_SUFFIX = ".img"
_TMP_PREFIX = ".tmp-"
_SHA_RE = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_IMAGE_SIDE = 4096  # pixels, width and height each
MAX_IMAGE_PIXELS = 16 * 1024 * 1024  # width * height (64 MiB as RGBA): the decoding bound
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")  # the only decoders PIL may pick for a product image


class ImageRefused(MessageError):
    """Bytes that are not a product picture the kiosk agrees to decode: unidentifiable, not one
    of IMAGE_FORMATS, or larger than the bounds. `str(e)` says which and why."""

    def __init__(self, detail: str) -> None:
        super().__init__(MessageErrorReason.BAD_VALUE, f"image refused: {detail}")


def open_bounded_image(source: bytes | Path) -> Image.Image:
    """`PIL.Image.open` (which reads the header only) plus the bounds check, before any pixel is
    decoded. Raises ImageRefused; the caller closes the returned image (a context manager).
    Only after this returned may the caller `.load()`/`.convert()` it."""
    import io

    from PIL import Image, UnidentifiedImageError

    # PIL's own guard (a warning above it, DecompressionBombError above twice it) as a backstop
    if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        # between MAX_IMAGE_PIXELS and twice it PIL only warns: check_image_bounds refuses
        # those below, with a clearer reason (a stray "ignore" filter left by two threads
        # racing here would only hide this one harmless warning)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp, formats=IMAGE_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # (the warning arrives as an exception only where warnings are errors, e.g. tests)
        raise ImageRefused(f"too many pixels ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageRefused(f"not a {'/'.join(IMAGE_FORMATS)} image") from e
    except (OSError, ValueError, SyntaxError) as e:  # PIL reports bad headers all three ways
        raise ImageRefused(f"unreadable header ({e})") from e
    try:
        check_image_bounds(im.size)
    except ImageRefused:
        im.close()
        raise
    return im


def check_image_bounds(size: tuple[int, int]) -> None:
    """Raise ImageRefused when an image of `size` (width, height) must not be decoded."""
    w, h = size
    if w < 1 or h < 1:
        raise ImageRefused(f"empty image {w}x{h}")
    if w > MAX_IMAGE_SIDE or h > MAX_IMAGE_SIDE:
        raise ImageRefused(
            f"{w}x{h} pixels exceeds {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} (not decoded)"
        )
    if w * h > MAX_IMAGE_PIXELS:
        raise ImageRefused(f"{w}x{h} = {w * h} pixels exceeds {MAX_IMAGE_PIXELS} (not decoded)")


def _check_decodable(data: bytes) -> None:
    with open_bounded_image(data):
        pass


def sha_of_ref(image_ref: str) -> str | None:
    """The sha256 (lower case) an `image_ref` names, or None when it is a file name or ''."""
    if isinstance(image_ref, str) and _SHA_RE.match(image_ref):
        return image_ref.lower()
    return None


def media_dir(data_dir: Path) -> Path:
    """Where a kiosk with this data directory keeps its fetched images."""
    return Path(data_dir) / MEDIA_DIR_NAME


def media_path(directory: Path, sha256: str) -> Path:
    """The file of image `sha256` in a media directory (present or not)."""
    sha = sha_of_ref(sha256)
    if sha is None:
        raise ValueError(f"not a sha256: {sha256!r}")
    return Path(directory) / f"{sha}{_SUFFIX}"


@dataclass
class _Entry:
    size: int
    used_at: float  # wall clock of the last put/touch (persisted as the file's mtime)
    verified: bool = False  # hashed since this process started (put, or path_for)


class MediaCache:
    """Verified images on disk, at most `budget_bytes` of them (see the module docstring).

    Thread-safe: `put` runs in paho's network thread, `path_for` in the UI's preload thread.
    """

    def __init__(self, directory: Path, budget_bytes: int, clock: Clock) -> None:
        if budget_bytes < 0:
            raise ValueError("budget_bytes must be >= 0")
        self.directory = Path(directory)
        self.budget_bytes = budget_bytes
        self.clock = clock
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._referenced: frozenset[str] = frozenset()
        self.evicted = 0
        self.rejected = 0
        self._scan()

    def _scan(self) -> None:
        for f in self.directory.iterdir():
            if f.name.startswith(_TMP_PREFIX):  # a write cut short by a crash
                with contextlib.suppress(OSError):
                    f.unlink()
                continue
            sha = sha_of_ref(f.name[: -len(_SUFFIX)]) if f.name.endswith(_SUFFIX) else None
            if sha is None or f.name != f"{sha}{_SUFFIX}" or not f.is_file():
                continue
            st = f.stat()
            self._entries[sha] = _Entry(st.st_size, st.st_mtime)

    # --- queries --------------------------------------------------------------------------

    def path_for(self, sha256: str) -> Path | None:
        """The file of image `sha256` if it is present and its bytes hash to its name (checked
        once per process; a file that fails is deleted). Counts as a use (LRU)."""
        sha = sha_of_ref(sha256)
        if sha is None:
            return None
        with self._lock:
            entry = self._entries.get(sha)
            if entry is None:
                return None
            path = media_path(self.directory, sha)
            if not entry.verified:
                try:
                    _check_decodable(check_image(sha, path.read_bytes()))
                    entry.verified = True
                except (OSError, MessageError) as e:
                    log_event(log, "media.corrupt", logging.WARNING, sha256=sha, error=str(e))
                    self._drop(sha)
                    return None
            self._touch(sha, entry)
            return path

    def missing(self, shas: Iterable[str]) -> list[str]:
        """The sha256 refs among `shas` (others are ignored) without a file, in order, once."""
        out: list[str] = []
        with self._lock:
            for ref in shas:
                sha = sha_of_ref(ref)
                if sha is not None and sha not in self._entries and sha not in out:
                    out.append(sha)
        return out

    def __contains__(self, sha256: object) -> bool:
        sha = sha_of_ref(sha256) if isinstance(sha256, str) else None
        with self._lock:
            return sha is not None and sha in self._entries

    def total_bytes(self) -> int:
        with self._lock:
            return sum(e.size for e in self._entries.values())

    def referenced(self) -> frozenset[str]:
        return self._referenced

    # --- changes --------------------------------------------------------------------------

    def set_referenced(self, shas: Iterable[str]) -> None:
        """The images the current catalog names: kept before anything else (see `put`)."""
        refs = frozenset(s for s in (sha_of_ref(r) for r in shas) if s is not None)
        with self._lock:
            self._referenced = refs

    def touch(self, sha256: str) -> None:
        """Mark an image as just used (LRU); nothing happens if it is not cached."""
        sha = sha_of_ref(sha256)
        with self._lock:
            entry = self._entries.get(sha) if sha is not None else None
            if sha is not None and entry is not None:
                self._touch(sha, entry)

    def put(self, sha256: str, data: bytes) -> Path:
        """Verify, store atomically, then evict down to the budget. Raises MessageError
        (HASH_MISMATCH, TOO_BIG) before writing anything when `data` is not image `sha256`,
        ImageRefused when it is but is no picture the kiosk agrees to decode (bounds)."""
        sha = sha_of_ref(sha256)
        if sha is None:
            raise ValueError(f"not a sha256: {sha256!r}")
        try:
            data = check_image(sha, data)
            _check_decodable(data)
        except ImageRefused as e:
            with self._lock:
                self.rejected += 1
            log_event(log, "media.refused", logging.WARNING, sha256=sha, reason=str(e))
            raise
        except MessageError as e:
            with self._lock:
                self.rejected += 1
            log_event(log, "media.rejected", logging.WARNING, sha256=sha, reason=str(e))
            raise
        path = media_path(self.directory, sha)
        with self._lock:
            existing = self._entries.get(sha)
            if existing is not None and existing.verified and path.is_file():
                self._touch(sha, existing)
                return path
            self._write_atomic(path, data)
            self._entries[sha] = _Entry(len(data), 0.0, verified=True)
            self._touch(sha, self._entries[sha])
            self._evict(keep=sha)
        return path

    # --- internals (lock held) -----------------------------------------------------------

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = self.directory / f"{_TMP_PREFIX}{path.name}.{os.getpid()}.{threading.get_ident()}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        # the rename itself survives a power cut only once the directory is synced
        with contextlib.suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _touch(self, sha: str, entry: _Entry) -> None:
        now = self.clock.time()
        # strictly increasing within a process: two uses in one clock tick keep their order
        entry.used_at = max(now, entry.used_at + 1e-6)
        with contextlib.suppress(OSError):
            os.utime(media_path(self.directory, sha), (entry.used_at, entry.used_at))

    def _drop(self, sha: str) -> None:
        self._entries.pop(sha, None)
        with contextlib.suppress(FileNotFoundError):
            media_path(self.directory, sha).unlink()

    def _evict(self, keep: str) -> None:
        total = sum(e.size for e in self._entries.values())
        if total <= self.budget_bytes:
            return
        by_age = sorted(
            (s for s in self._entries if s != keep), key=lambda s: self._entries[s].used_at
        )
        unreferenced = [s for s in by_age if s not in self._referenced]
        referenced = [s for s in by_age if s in self._referenced]
        for group in (unreferenced, referenced):
            if group is referenced and total > self.budget_bytes:
                ref_bytes = sum(
                    e.size for s, e in self._entries.items() if s in self._referenced or s == keep
                )
                log_event(
                    log,
                    "media.budget_too_small",
                    logging.WARNING,
                    budget_bytes=self.budget_bytes,
                    referenced_bytes=ref_bytes,
                    detail="the catalog's images alone exceed the budget; evicting some of them",
                )
            for sha in group:
                if total <= self.budget_bytes:
                    return
                total -= self._entries[sha].size
                self._drop(sha)
                self.evicted += 1
                log_event(log, "media.evicted", logging.DEBUG, sha256=sha)


@dataclass
class _Want:
    attempts: int = 0  # requests sent (a reply timeout or a rejected reply ends each)
    next_at: float = 0.0  # monotonic: not asked again before
    sent_at: float | None = None  # monotonic: an answer is awaited since


class MediaFetcher:
    """Asks the province for the catalog's images that the cache lacks.

    `want(image_refs)` (a catalog was applied, or the link came up) sets what is wanted;
    `poll()` (called every fraction of a second by the sync bridge) sends the due requests:
    at most `max_outstanding` awaiting an answer, at most `rate_per_s` requests per second
    (burst `burst`), a request unanswered after `reply_timeout_s` (or answered with wrong
    bytes) is retried after a jittered exponential backoff (`retry_base_s` doubling, capped
    at `retry_cap_s`). A request `publish_request` could not send (offline) is tried again
    after `offline_retry_s` without counting as an attempt. `on_image(sha, data)` gets every
    image that arrives (a reply or a retained province-wide one): stored when the catalog
    names it, then `on_new_image(sha)` is called. An image stored once is not asked for
    again until the next `want()` (even if the budget evicts it: no fetch/evict loop).
    Thread-safe; `publish_request` and `on_new_image` are called without the lock held.
    """

    def __init__(
        self,
        cache: MediaCache,
        publish_request: Callable[[str], bool],
        clock: Clock,
        *,
        on_new_image: Callable[[str], None] | None = None,
        max_outstanding: int = 4,
        rate_per_s: float = 2.0,
        burst: float = 4.0,
        reply_timeout_s: float = 20.0,
        retry_base_s: float = 5.0,
        retry_cap_s: float = 600.0,
        offline_retry_s: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_outstanding < 1:
            raise ValueError("max_outstanding must be >= 1")
        self.cache = cache
        self.publish_request = publish_request
        self.clock = clock
        self.on_new_image = on_new_image
        self.max_outstanding = max_outstanding
        self.reply_timeout_s = reply_timeout_s
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.offline_retry_s = offline_retry_s
        self._bucket = TokenBucket(rate_per_s, burst, clock.monotonic())
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._wants: dict[str, _Want] = {}
        self._refused: set[str] = set()  # right hash, but refused bytes: never asked again
        self.requested = 0  # requests sent
        self.stored = 0  # images stored
        self.rejected = 0  # images refused (hash mismatch, too big, not decodable, bounds)

    def want(self, image_refs: Iterable[str]) -> list[str]:
        """The catalog's image refs (file names are ignored): mark them referenced in the
        cache, forget wants no longer named, queue the missing ones. Returns those missing."""
        shas = [s for s in (sha_of_ref(r) for r in image_refs) if s is not None]
        self.cache.set_referenced(shas)
        with self._lock:
            refused = set(self._refused)
        missing = [s for s in self.cache.missing(shas) if s not in refused]
        now = self.clock.monotonic()
        with self._lock:
            for sha in [s for s in self._wants if s not in missing]:
                del self._wants[sha]
            for sha in missing:
                w = self._wants.setdefault(sha, _Want(next_at=now))
                if w.sent_at is None:
                    w.next_at = min(w.next_at, now)  # a (re)connect is a good moment to ask
        if missing:
            log_event(log, "media.missing", count=len(missing))
        return missing

    def pending(self) -> list[str]:
        """What is still wanted (asked for or to be asked for)."""
        with self._lock:
            return sorted(self._wants)

    def outstanding(self) -> int:
        with self._lock:
            return sum(1 for w in self._wants.values() if w.sent_at is not None)

    def poll(self) -> int:
        """Send the requests that are due; returns how many went out."""
        now = self.clock.monotonic()
        to_send: list[str] = []
        with self._lock:
            for w in self._wants.values():
                if w.sent_at is not None and now - w.sent_at >= self.reply_timeout_s:
                    w.sent_at = None  # no answer: try again later
                    w.next_at = now + self._backoff(w.attempts)
            busy = sum(1 for w in self._wants.values() if w.sent_at is not None)
            due = sorted(
                (s for s, w in self._wants.items() if w.sent_at is None and w.next_at <= now),
                key=lambda s: self._wants[s].next_at,
            )
            for sha in due:
                if busy >= self.max_outstanding or not self._bucket.take(now):
                    break
                w = self._wants[sha]
                w.sent_at = now
                w.attempts += 1
                busy += 1
                to_send.append(sha)
        sent = 0
        for sha in to_send:
            ok = False
            try:
                ok = self.publish_request(sha)
            except Exception:
                log.exception("media: publish_request failed")
            with self._lock:
                w_now = self._wants.get(sha)
                if ok:
                    sent += 1
                    self.requested += 1
                elif w_now is not None:  # not sent (offline): not an attempt
                    w_now.sent_at = None
                    w_now.attempts -= 1
                    w_now.next_at = now + self.offline_retry_s
        if sent:
            log_event(log, "media.requested", logging.DEBUG, count=sent)
        return sent

    def on_image(self, sha256: str, data: bytes) -> bool:
        """An image arrived. True when it was stored (and `on_new_image` called)."""
        sha = sha_of_ref(sha256)
        if sha is None:
            return False
        with self._lock:
            wanted = sha in self._wants
            if sha in self._refused:
                return False  # refused once: the same hash is the same bytes
        if not wanted and (sha not in self.cache.referenced() or sha in self.cache):
            return False  # not named by the catalog, or already here (a retained re-delivery)
        try:
            self.cache.put(sha, data)
        except ImageRefused:
            with self._lock:  # these bytes are what the hash names: asking again gets them again
                self.rejected += 1
                self._refused.add(sha)
                self._wants.pop(sha, None)
            return False
        except MessageError:
            now = self.clock.monotonic()
            with self._lock:
                self.rejected += 1
                w = self._wants.get(sha)
                if w is not None:  # wrong bytes end this attempt: back off, then ask again
                    w.sent_at = None
                    w.next_at = now + self._backoff(max(1, w.attempts))
            return False
        except OSError as e:
            log_event(log, "media.write_failed", logging.ERROR, sha256=sha, error=repr(e))
            return False
        with self._lock:
            self._wants.pop(sha, None)
            self.stored += 1
        log_event(log, "media.stored", sha256=sha, bytes=len(data))
        if self.on_new_image is not None:
            try:
                self.on_new_image(sha)
            except Exception:
                log.exception("media: on_new_image failed")
        return True

    def _backoff(self, attempts: int) -> float:
        ceiling = min(self.retry_cap_s, self.retry_base_s * 2.0 ** min(max(attempts, 1) - 1, 30))
        return self._rng.uniform(ceiling / 2, ceiling)  # half jitter: never hammer at once

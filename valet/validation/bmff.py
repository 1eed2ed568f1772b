"""The ISO base media file format (ISO/IEC 14496-12), as far as deciding an upload needs it: the box
headers at the top level, the ``ftyp`` brands, and the children of a box. HEIC/HEIF/AVIF photos and
MP4/QuickTime videos are all this format.

A box is ``size`` (32 bits; 1: a 64-bit size follows the type; 0: to the end of the file), a four-byte
type, and (for ``uuid``) a 16-byte extended type. The top-level boxes must tile the upload exactly: no box
ends past the end of the blob and nothing follows the last one, so no second format hides after them.

Reading goes through :class:`Ranges`, a small interface (``read(offset, length)``) that the structure
checks ask for and the storage side provides. :class:`HeadAndTail` is the one used today: it serves the
head the validator already holds, and otherwise fetches a window at the offset asked for in one ranged
read. A video whose ``moov`` follows its ``mdat`` thus costs the head plus one read of the tail: the walk
skips the media data by its size and asks for the next header, which the window fetched there also
covers, with the ``moov`` after it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from valet.validation.blobio import RangeSource, read_range
from valet.validation.reasons import Reason, Rejection

WINDOW = 1024 * 1024  # one ranged read beyond the head covers this much (a phone video's moov fits)
MAX_BOXES = 4096  # top-level boxes walked at most (a fragmented MP4 has two per fragment)
MAX_REQUESTS = 16  # ranged reads beyond the head at most, for one decision
_PRINTABLE = frozenset(range(0x20, 0x7F)) | {0xA9}  # QuickTime uses (c) (0xA9) in some box types


class Ranges(Protocol):
    """What a structure check needs from an upload: bytes at an offset (fewer only at the end)."""

    def read(self, offset: int, length: int) -> bytes: ...


class HeadAndTail:
    """:class:`Ranges` over a blob: the head from memory, anything else by one ranged read of
    ``window`` bytes from the offset asked for (kept, so the boxes after it cost nothing more).
    ``max_requests`` bounds the reads; past it the check fails closed."""

    def __init__(self, source: RangeSource, size: int, head: bytes, *, window: int = WINDOW,
                 max_requests: int = MAX_REQUESTS) -> None:
        self._source, self._size, self._head = source, size, head[:size]
        self._window, self._max_requests = window, max_requests
        self._at, self._data = 0, b""
        self.requests = 0
        self.bytes_read = 0

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self._size)
        if offset >= end:
            return b""
        if end <= len(self._head):
            return self._head[offset:end]
        if offset < len(self._head):  # what the head holds is not fetched again
            return self._head[offset:] + self.read(len(self._head), end - len(self._head))
        if not (self._at <= offset and end <= self._at + len(self._data)):
            if self.requests >= self._max_requests:
                raise Rejection(Reason.STRUCTURE_UNVERIFIABLE, f"more than {self._max_requests} reads needed")
            fetch = min(max(length, self._window), self._size - offset)
            self._at, self._data = offset, read_range(self._source, offset, fetch)
            self.requests += 1
            self.bytes_read += len(self._data)
        return self._data[offset - self._at : end - self._at]


class InMemory:
    """:class:`Ranges` over bytes already held (a photo read whole)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


@dataclass(frozen=True)
class Box:
    kind: str  # the four-character type, e.g. "moov"
    offset: int
    header: int  # header length: 8, 16 (64-bit size) or 24/32 with a uuid
    size: int  # the whole box, header included

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def body(self) -> int:
        return self.offset + self.header


def boxes(ranges: Ranges, start: int, end: int, *, invalid: Reason, limit: int = MAX_BOXES) -> Iterator[Box]:
    """The boxes that tile ``[start, end)`` exactly; :class:`Rejection` (``invalid``) when one is
    malformed or runs past ``end``."""
    at, count = start, 0
    while at < end:
        count += 1
        if count > limit:
            raise Rejection(Reason.STRUCTURE_UNVERIFIABLE, f"more than {limit} boxes")
        head = ranges.read(at, 16)
        if len(head) < 8:
            raise Rejection(invalid, f"{end - at} trailing bytes at {at}: not a box")
        size, raw = struct.unpack(">I4s", head[:8])
        if any(byte not in _PRINTABLE for byte in raw):
            raise Rejection(invalid, f"box at {at} has no type")
        kind, header = raw.decode("latin-1"), 8
        if size == 1:
            if len(head) < 16:
                raise Rejection(invalid, f"box '{kind}' at {at} cut inside its header")
            size, header = struct.unpack(">Q", head[8:16])[0], 16
        elif size == 0:
            size = end - at  # "to the end of the file" (or of the enclosing box)
        if kind == "uuid":
            header += 16
        if size < header:
            raise Rejection(invalid, f"box '{kind}' at {at} is smaller than its header ({size})")
        if at + size > end:
            raise Rejection(invalid, f"box '{kind}' at {at} ends at {at + size}, past the end ({end})")
        yield Box(kind, at, header, size)
        at += size


def top_level(ranges: Ranges, size: int, *, invalid: Reason) -> list[Box]:
    return list(boxes(ranges, 0, size, invalid=invalid))


def children(ranges: Ranges, box: Box, *, invalid: Reason, skip: int = 0, limit: int = MAX_BOXES) -> list[Box]:
    """The boxes inside ``box`` (``skip``: bytes of fields before them, e.g. 4 for a full box)."""
    return list(boxes(ranges, box.body + skip, box.end, invalid=invalid, limit=limit))


def brands(ftyp: bytes) -> tuple[str, set[str]]:
    """(major brand, every brand) from an ``ftyp`` box's body (the major brand counts as compatible)."""
    if len(ftyp) < 8 or len(ftyp) % 4:
        return "", set()
    major = ftyp[:4].decode("latin-1")
    compatible = {ftyp[at : at + 4].decode("latin-1") for at in range(8, len(ftyp), 4)}
    return major, compatible | {major}


def head_brands(head: bytes) -> tuple[str, set[str]] | None:
    """The brands of an ``ftyp`` box at offset 0 when the head holds it whole; ``None`` otherwise."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    size = struct.unpack(">I", head[:4])[0]
    if size < 16 or size > len(head) or size > 4096:
        return None
    return brands(head[8:size])


def first_box_kind(head: bytes) -> str | None:
    if len(head) < 8:
        return None
    raw = head[4:8]
    return raw.decode("latin-1") if all(byte in _PRINTABLE for byte in raw) else None

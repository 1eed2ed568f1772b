"""Zip archives: limits against bombs, from the central directory, and the local headers walked to match.

The central directory lists every entry with its compressed and uncompressed size and where its data
starts. ``zipfile`` reads it (and the end record) through a seekable range reader, so checking a
multi-GiB archive costs a few ranged GETs and never decompresses anything. Checked: entry count, total
uncompressed size, compression ratio (overall and per entry, above a floor so small text files are not
refused), and overlapping entries (the "non-recursive" zip bomb, where many entries share the same
compressed bytes). Sizes in the directory can lie; whoever extracts later must still enforce limits while
decompressing. This check stops the archives that are bombs by construction.

The directory alone can also be fooled: streaming unzippers read the *local* headers from offset 0 and
never look at the directory, so an entry missing from it (or listed with another name or size) still
extracts. :func:`check_local_headers` walks every local header from offset 0 (one ranged GET per entry
at most, usually fewer: a 4 KiB read-ahead covers the headers of small neighbouring entries): the
entries must tile the file up to the directory with no gap or overlap, each local header must agree with
its directory record (name, method, flags, CRC and sizes, from the data descriptor when the entry has
one), and names with ``..``, absolute paths, drive letters, backslashes or NUL are refused: every name an
extractor may use (the plain name read as UTF-8 and as CP437, the Unicode Path extra fields 0x7075 of the
central and the local header, and their NFKC forms; see :func:`check_names`).
"""

from __future__ import annotations

import re
import struct
import unicodedata
import zipfile
from itertools import pairwise
from typing import IO

from valet.grants.policy import ArchiveLimits
from valet.validation.blobio import ReadBudgetExceeded
from valet.validation.reasons import Reason, Rejection

RATIO_FLOOR_BYTES = 1024 * 1024  # ratio limits apply to entries (and archives) that expand beyond this
_LOCAL_HEADER = 30
_DIRECTORY_BYTES_PER_ENTRY = 1024  # budget for reading the directory: generous per entry
LOCAL_READ_AHEAD = 4096
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
_ZIP64_EXTRA = 0x0001
_UNICODE_PATH = 0x7075  # Info-ZIP Unicode Path extra field
_DRIVE = re.compile(r"^[A-Za-z]:")
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def is_zip_container(head: bytes) -> bool:
    """The bytes start as a zip archive (also OOXML, ODF, EPUB, JAR, APK...): a local header or an empty
    archive's end record at offset 0."""
    return head[:4] in ZIP_MAGICS


def directory_budget(limits: ArchiveLimits) -> int:
    """Bytes the reader may fetch: end-record search (64 KiB + 22) plus a directory of allowed size."""
    return 128 * 1024 + limits.max_entries * _DIRECTORY_BYTES_PER_ENTRY


def local_budget(entries: int) -> int:
    return (entries + 2) * 2 * LOCAL_READ_AHEAD


def check_zip(file: IO[bytes], size: int, limits: ArchiveLimits, local: IO[bytes] | None = None) -> int:
    """Raise :class:`Rejection` if the archive breaks ``limits``; return its entry count. ``local`` (a
    second reader with a small read-ahead) is used to walk the local headers."""
    try:
        with zipfile.ZipFile(file) as archive:
            entries = archive.infolist()
            directory_at = int(getattr(archive, "start_dir", size))
    except ReadBudgetExceeded as exc:
        raise Rejection(
            Reason.ARCHIVE_TOO_MANY_ENTRIES, "central directory larger than the entry limit allows"
        ) from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, OSError) as exc:
        raise Rejection(Reason.ARCHIVE_INVALID, f"not a readable zip archive ({type(exc).__name__})") from exc

    if len(entries) > limits.max_entries:
        raise Rejection(Reason.ARCHIVE_TOO_MANY_ENTRIES, f"{len(entries)} entries; limit {limits.max_entries}")
    total = sum(info.file_size for info in entries)
    if total > limits.max_total_bytes:
        raise Rejection(Reason.ARCHIVE_TOO_LARGE, f"{total} bytes uncompressed; limit {limits.max_total_bytes}")
    if total > RATIO_FLOOR_BYTES and total > limits.max_ratio * max(size, 1):
        raise Rejection(Reason.ARCHIVE_RATIO, f"expands {total // max(size, 1)}x; limit {limits.max_ratio}x")
    for info in entries:
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise Rejection(Reason.ARCHIVE_RATIO, f"an entry expands more than {limits.max_ratio}x")

    spans = sorted((info.header_offset, _end_of(info)) for info in entries)
    for (start, end), (next_start, _) in pairwise(spans):
        if next_start < end or next_start == start:
            raise Rejection(Reason.ARCHIVE_OVERLAP, "entries overlap (shared compressed data)")
    if spans and spans[-1][1] > directory_at:
        raise Rejection(Reason.ARCHIVE_OVERLAP, "entry data runs into the central directory")
    for info in entries:
        check_name(info.orig_filename)
        check_names(_raw_name(info), info.extra)
    if local is not None:
        check_local_headers(local, entries, directory_at)
    return len(entries)


def check_name(name: str) -> None:
    parts = name.split("/")
    if ("\\" in name or "\x00" in name or name.startswith("/") or _DRIVE.match(name)
            or any(part == ".." for part in parts)):
        raise Rejection(Reason.ARCHIVE_UNSAFE_NAME, f"unsafe entry name {name[:80]!r}")


def check_names(raw: bytes, extra: bytes) -> None:
    """Every name an extractor may give an entry: its bytes read as UTF-8 and as CP437 (extractors differ
    on the flag that says which), each Info-ZIP Unicode Path extra field (0x7075, preferred by Info-ZIP,
    7-Zip and others over the plain name), and the NFKC form of each (some extractors normalise)."""
    names = {raw.decode("utf-8", errors="replace"), raw.decode("cp437"), *_unicode_paths(extra)}
    for name in names | {unicodedata.normalize("NFKC", name) for name in names}:
        check_name(name)


def _unicode_paths(extra: bytes) -> list[str]:
    """The names in Info-ZIP Unicode Path fields: version (1 byte), CRC-32 of the plain name, UTF-8 name."""
    found, at = [], 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == _UNICODE_PATH:
            found.append(extra[at + 9:at + 4 + length].decode("utf-8", errors="replace"))
        at += 4 + length
    return found


def check_local_headers(file: IO[bytes], entries: list[zipfile.ZipInfo], directory_at: int) -> None:
    """Walk the local headers from offset 0 to the central directory (see the module docstring)."""
    try:
        _walk(file, entries, directory_at)
    except ReadBudgetExceeded as exc:
        raise Rejection(Reason.ARCHIVE_TOO_MANY_ENTRIES, "local headers larger than the entry limit allows") from exc
    except (struct.error, EOFError, OSError) as exc:
        raise Rejection(Reason.ARCHIVE_INVALID, f"unreadable local header ({type(exc).__name__})") from exc


def _read(file: IO[bytes], at: int, length: int) -> bytes:
    file.seek(at)
    data = file.read(length)
    if len(data) != length:
        raise EOFError("archive ends inside a record")
    return data


def _walk(file: IO[bytes], entries: list[zipfile.ZipInfo], directory_at: int) -> None:
    position = 0
    for info in sorted(entries, key=lambda i: i.header_offset):
        if info.header_offset > position:
            raise Rejection(Reason.ARCHIVE_GAP, f"{info.header_offset - position} unlisted bytes at {position}")
        if info.header_offset < position:
            raise Rejection(Reason.ARCHIVE_OVERLAP, f"entry at {info.header_offset} overlaps the one before")
        (signature, _version, flags, method, _time, _date, crc, compressed, uncompressed, name_length,
         extra_length) = _LOCAL.unpack(_read(file, position, _LOCAL.size))
        if signature != _LOCAL_SIGNATURE:
            raise Rejection(Reason.ARCHIVE_MISMATCH, f"no local header where the directory says ({position})")
        name = _read(file, position + _LOCAL.size, name_length)
        extra = _read(file, position + _LOCAL.size + name_length, extra_length)
        if name != _raw_name(info):
            raise Rejection(Reason.ARCHIVE_MISMATCH, "local and central names differ")
        check_names(name, extra)  # the local extra field may carry another Unicode Path than the central one
        if method != info.compress_type or (flags & 0x809) != (info.flag_bits & 0x809):
            raise Rejection(Reason.ARCHIVE_MISMATCH, "local and central method or flags differ")
        zip64 = _zip64_extra(extra)
        if 0xFFFFFFFF in (uncompressed, compressed):
            if zip64 is None:
                raise Rejection(Reason.ARCHIVE_MISMATCH, "local header announces zip64 sizes it does not carry")
            uncompressed, compressed = zip64
        data_end = position + _LOCAL.size + name_length + extra_length + info.compress_size
        if flags & 0x08:  # sizes and CRC follow the data, in a data descriptor (8-byte sizes with zip64)
            crc, compressed, uncompressed, length = _descriptor(file, data_end, zip64 is not None)
            data_end += length
        if (crc, compressed, uncompressed) != (info.CRC, info.compress_size, info.file_size):
            raise Rejection(Reason.ARCHIVE_MISMATCH, "local and central CRC or sizes differ")
        position = data_end
    if position != directory_at:
        raise Rejection(Reason.ARCHIVE_GAP if position < directory_at else Reason.ARCHIVE_OVERLAP,
                        f"entries end at {position}; the directory starts at {directory_at}")


def _zip64_extra(extra: bytes) -> tuple[int, int] | None:
    """(uncompressed, compressed) from a local header's zip64 extra field, if it has one."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == _ZIP64_EXTRA and length >= 16:
            big_uncompressed, big_compressed = struct.unpack_from("<QQ", extra, at + 4)
            return big_uncompressed, big_compressed
        at += 4 + length
    return None


def _descriptor(file: IO[bytes], at: int, zip64: bool) -> tuple[int, int, int, int]:
    """(crc, compressed, uncompressed, record length) of the data descriptor at ``at``."""
    size_format = "<QQ" if zip64 else "<II"
    sizes = struct.calcsize(size_format)
    head = _read(file, at, 4)
    start = 4 if head == _DESCRIPTOR_SIGNATURE else 0
    crc = struct.unpack("<I", _read(file, at + start, 4))[0]
    compressed, uncompressed = struct.unpack(size_format, _read(file, at + start + 4, sizes))
    return crc, compressed, uncompressed, start + 4 + sizes


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """The entry name's bytes as stored in the central directory."""
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    return info.orig_filename.encode(encoding, errors="replace")


def _end_of(info: zipfile.ZipInfo) -> int:
    """Lowest possible end of an entry's local header plus data (local extra fields can only add)."""
    return info.header_offset + _LOCAL_HEADER + len(_raw_name(info)) + info.compress_size

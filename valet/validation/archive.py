"""Zip archives: limits against bombs, read from the central directory only.

The central directory lists every entry with its compressed and uncompressed size and where its data
starts. ``zipfile`` reads it (and the end record) through a seekable range reader, so checking a
multi-GiB archive costs a few ranged GETs and never decompresses anything. Checked: entry count, total
uncompressed size, compression ratio (overall and per entry, above a floor so small text files are not
refused), and overlapping entries (the "non-recursive" zip bomb, where many entries share the same
compressed bytes). Sizes in the directory can lie; whoever extracts later must still enforce limits while
decompressing. This check stops the archives that are bombs by construction.
"""

from __future__ import annotations

import zipfile
from itertools import pairwise
from typing import IO

from valet.policy import ArchiveLimits
from valet.validation.blobio import ReadBudgetExceeded
from valet.validation.reasons import Reason, Rejection

RATIO_FLOOR_BYTES = 1024 * 1024  # ratio limits apply to entries (and archives) that expand beyond this
_LOCAL_HEADER = 30
_DIRECTORY_BYTES_PER_ENTRY = 1024  # budget for reading the directory: generous per entry


def directory_budget(limits: ArchiveLimits) -> int:
    """Bytes the reader may fetch: end-record search (64 KiB + 22) plus a directory of allowed size."""
    return 128 * 1024 + limits.max_entries * _DIRECTORY_BYTES_PER_ENTRY


def check_zip(file: IO[bytes], size: int, limits: ArchiveLimits) -> int:
    """Raise :class:`Rejection` if the archive breaks ``limits``; return its entry count."""
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
    return len(entries)


def _end_of(info: zipfile.ZipInfo) -> int:
    """Lowest possible end of an entry's local header plus data (local extra fields can only add)."""
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    name_length = len(info.orig_filename.encode(encoding, errors="replace"))
    return info.header_offset + _LOCAL_HEADER + name_length + info.compress_size

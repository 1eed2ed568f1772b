"""Reading blobs without holding them: range reads for the head and the zip central directory, and a
bounded-memory streaming hash for full-content checks.

Nothing here downloads a whole blob into memory. Memory is bounded by ``chunk_bytes * (concurrency + 1)``
for hashing and by one read-ahead block for the seekable reader.
"""

from __future__ import annotations

import hashlib
import io
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Protocol, cast

CHUNK_BYTES = 2 * 1024 * 1024  # the SDK allocates ~9x a range while reading it: 2 MiB x 3 keeps the peak < 64 MiB
CONCURRENCY = 3
READ_AHEAD = 64 * 1024
MAX_FETCH = 1024 * 1024  # a larger read is served by several ranges: the SDK's per-range overhead stays small


class RangeSource(Protocol):
    """What the readers need from a blob: :class:`azure.storage.blob.BlobClient` fits."""

    def download_blob(self, offset: int | None = None, length: int | None = None, **kwargs: object) -> object: ...


def read_range(blob: RangeSource, offset: int, length: int) -> bytes:
    """Exactly one ranged GET (the SDK does not split requests of this size)."""
    if length <= 0:
        return b""
    data: bytes = blob.download_blob(offset=offset, length=length, max_concurrency=1).readall()  # type: ignore[attr-defined]
    return data


class ReadBudgetExceeded(Exception):
    """The reader was asked for more bytes than its budget (a central directory too large to be honest)."""


class RangeReader(io.RawIOBase):
    """A seekable, read-only file object over a blob of known size, served by range reads.

    ``zipfile`` only seeks and reads the end record and the central directory, so a multi-GiB archive
    costs a few ranged GETs. ``budget`` caps the total bytes fetched.
    """

    def __init__(self, blob: RangeSource, size: int, *, budget: int, read_ahead: int = READ_AHEAD,
                 head: bytes = b"") -> None:
        super().__init__()
        self._blob = blob
        self._size = size
        self._pos = 0
        self._budget = budget
        self._read_ahead = read_ahead
        self._head = head[:size]  # bytes already read from offset 0: served without a request
        self._buffer = b""
        self._buffer_at = 0
        self._previous = (0, b"")  # the block before the current one: parsers step back a little
        self.bytes_fetched = 0
        self.requests = 0
        self.exceeded = False  # set once a read was refused, even if the caller swallowed the exception

    @property
    def budget(self) -> int:
        return self._budget

    def as_file(self) -> IO[bytes]:
        """This reader typed as the binary file object that zipfile, Pillow and pypdf expect."""
        return cast(IO[bytes], self)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        wanted = min(len(target), self._size - self._pos)
        if wanted <= 0:
            return 0
        if self._pos + wanted <= len(self._head):
            target[:wanted] = self._head[self._pos : self._pos + wanted]
            self._pos += wanted
            return wanted
        if not self._covers(self._buffer_at, self._buffer, wanted) and self._covers(*self._previous, wanted):
            self._previous, (self._buffer_at, self._buffer) = (self._buffer_at, self._buffer), self._previous
        if not self._covers(self._buffer_at, self._buffer, wanted):
            fetch = min(max(wanted, self._read_ahead), self._size - self._pos)
            if self.bytes_fetched + fetch > self._budget:
                self.exceeded = True
                raise ReadBudgetExceeded(f"reading {fetch} more bytes would exceed {self._budget}")
            parts = [read_range(self._blob, at, min(MAX_FETCH, self._pos + fetch - at))
                     for at in range(self._pos, self._pos + fetch, MAX_FETCH)]
            self._previous = (self._buffer_at, self._buffer)
            self._buffer = parts[0] if len(parts) == 1 else b"".join(parts)
            self._buffer_at = self._pos
            self.bytes_fetched += len(self._buffer)
            self.requests += len(parts)
        at = self._pos - self._buffer_at
        chunk = self._buffer[at : at + wanted]
        target[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def _covers(self, start: int, buffer: bytes, wanted: int) -> bool:
        return start <= self._pos and self._pos + wanted <= start + len(buffer)


def iter_chunks(
    blob: RangeSource, size: int, *, chunk_bytes: int = CHUNK_BYTES, concurrency: int = CONCURRENCY
) -> Iterator[bytes]:
    """The blob's bytes in order, as ``chunk_bytes`` ranges fetched ``concurrency`` at a time.

    At most ``concurrency`` chunks are in flight and one is being consumed, so memory stays flat
    whatever the blob size; parallel ranges keep the network busy while the consumer hashes.
    """
    offsets = iter(range(0, size, chunk_bytes))
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="valet-range") as pool:
        pending: deque[Future[bytes]] = deque()

        def submit_next() -> None:
            offset = next(offsets, None)
            if offset is not None:
                pending.append(pool.submit(read_range, blob, offset, min(chunk_bytes, size - offset)))

        for _ in range(concurrency):
            submit_next()
        try:
            while pending:
                data = pending.popleft().result()
                submit_next()
                yield data
        finally:
            for future in pending:
                future.cancel()


def sha256_of(blob: RangeSource, size: int, *, chunk_bytes: int = CHUNK_BYTES, concurrency: int = CONCURRENCY) -> str:
    digest = hashlib.sha256()
    for chunk in iter_chunks(blob, size, chunk_bytes=chunk_bytes, concurrency=concurrency):
        digest.update(chunk)
        del chunk
    return digest.hexdigest()

"""The resume journal of a block upload: a small JSON file per (service, file, grant request), so that the
same command run again after the process was killed sends only the blocks storage lacks.

It holds the grant without its SAS (``uploadUrl`` and ``signature`` are credentials: a resumed upload asks
``POST /api/uploads/{uploadId}/renew`` for a fresh one), the file's size and modification time (a changed
file starts over), the block size, and the blocks storage confirmed (``201``). It is rewritten atomically
(a temporary file, then a rename) after each confirmed block, so a ``kill -9`` leaves the previous or the
next version, never half of one; what it misses are the blocks in flight when the process died. Files are
created ``0600`` in a ``0700`` folder: ``$VALET_UPLOAD_JOURNAL_DIR``, else ``$XDG_CACHE_HOME/valet-upload``,
else ``~/.cache/valet-upload``. The journal is removed once the blob is committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

VERSION = 1
_SECRET_FIELDS = ("uploadUrl", "signature")


def default_folder(env: Mapping[str, str]) -> Path:
    if env.get("VALET_UPLOAD_JOURNAL_DIR"):
        return Path(env["VALET_UPLOAD_JOURNAL_DIR"])
    cache = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return cache / "valet-upload"


class Journal:
    def __init__(self, folder: Path, *, service: str, path: Path, content_type: str, profile: str | None,
                 sha256: bool, block_bytes: int) -> None:
        stat = path.stat()
        self.size, self.mtime_ns, self.block_bytes = stat.st_size, stat.st_mtime_ns, block_bytes
        key = json.dumps([service, str(path.resolve()), self.size, self.mtime_ns, content_type, profile or "",
                          sha256, block_bytes])
        self.path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
        self._folder = folder
        self._lock = threading.Lock()
        self._grant: dict[str, Any] = {}
        self._done: set[int] = set()

    def load(self) -> tuple[dict[str, Any], set[int]] | None:
        """The saved grant (without SAS) and confirmed blocks, or ``None`` when there is nothing to resume
        (no journal, another version, another file state)."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("v") != VERSION or doc.get("size") != self.size or \
                doc.get("mtimeNs") != self.mtime_ns or doc.get("blockBytes") != self.block_bytes:
            return None
        grant, done = doc.get("grant"), doc.get("done")
        if not isinstance(grant, dict) or not isinstance(done, list):
            return None
        self._grant = grant
        self._done = {n for n in done if isinstance(n, int) and n >= 0}
        return dict(grant), set(self._done)

    def start(self, grant: Mapping[str, Any]) -> None:
        """A new upload: remember its grant (never its SAS), no block confirmed yet."""
        with self._lock:
            self._grant = {k: v for k, v in grant.items() if k not in _SECRET_FIELDS}
            self._done = set()
            self._write()

    def confirmed(self, block: int) -> None:
        with self._lock:
            self._done.add(block)
            self._write()

    def remove(self) -> None:
        with self._lock:
            self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        doc = {"v": VERSION, "size": self.size, "mtimeNs": self.mtime_ns, "blockBytes": self.block_bytes,
               "grant": self._grant, "done": sorted(self._done)}
        tmp = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
        os.replace(tmp, self.path)

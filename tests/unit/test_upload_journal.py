"""The resume journal of valet-upload (clients/python/valet_client/journal.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from valet_client.journal import Journal, default_folder

GRANT = {"uploadId": "u1", "blobUri": "https://acct/uploads/x.bin", "statusUrl": "https://app/api/uploads/u1",
         "headers": {"x-ms-blob-type": "BlockBlob"}, "uploadUrl": "https://acct/uploads/x.bin?sig=SECRET",
         "signature": "sig=SECRET", "expiresOn": "2026-12-06T21:00:00Z"}


def journal(folder: Path, file: Path, **overrides: object) -> Journal:
    options: dict[str, object] = {"service": "https://app", "path": file, "content_type": "application/octet-stream",
                                  "profile": None, "sha256": False, "block_bytes": 8}
    options.update(overrides)
    return Journal(folder, **options)  # type: ignore[arg-type]


def test_it_keeps_the_grant_without_its_sas_and_the_confirmed_blocks(tmp_path: Path) -> None:
    file = tmp_path / "f.bin"
    file.write_bytes(b"x" * 20)
    j = journal(tmp_path / "j", file)
    j.start(GRANT)
    j.confirmed(2)
    j.confirmed(0)
    text = j.path.read_text()
    assert "SECRET" not in text and "uploadUrl" not in text
    assert oct(j.path.stat().st_mode & 0o777) == "0o600" and oct(j.path.parent.stat().st_mode & 0o777) == "0o700"
    grant, done = journal(tmp_path / "j", file).load()  # type: ignore[misc]
    assert grant["uploadId"] == "u1" and done == {0, 2}
    assert json.loads(text)["done"] == [0, 2]


def test_a_changed_file_or_another_block_size_is_not_resumed(tmp_path: Path) -> None:
    file = tmp_path / "f.bin"
    file.write_bytes(b"x" * 20)
    j = journal(tmp_path / "j", file)
    j.start(GRANT)
    assert journal(tmp_path / "j", file, block_bytes=16).load() is None  # another key: another file
    os.utime(file, ns=(1, 1))
    assert journal(tmp_path / "j", file).load() is None


def test_a_damaged_journal_is_ignored_and_removal_is_idempotent(tmp_path: Path) -> None:
    file = tmp_path / "f.bin"
    file.write_bytes(b"x")
    j = journal(tmp_path / "j", file)
    j.start(GRANT)
    j.path.write_text("{not json")
    assert j.load() is None
    j.remove()
    j.remove()
    assert not j.path.exists()


def test_the_folder_comes_from_the_environment() -> None:
    assert default_folder({"VALET_UPLOAD_JOURNAL_DIR": "/x"}) == Path("/x")
    assert default_folder({"XDG_CACHE_HOME": "/c"}) == Path("/c/valet-upload")

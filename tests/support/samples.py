"""Small, valid sample files generated in code (no binary fixtures in the repository)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def png(width: int = 4, height: int = 4) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def pdf() -> bytes:
    body = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n" \
           b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    return body


def html() -> bytes:
    return b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"


def svg_with_script() -> bytes:
    return b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'


def zip_file(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def zip_bomb(expanded_mib: int = 32) -> bytes:
    """One entry of zeros: ~1000x compression, far beyond any sane ratio limit."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("zeros.bin", "w", force_zip64=True) as entry:
            block = bytes(1024 * 1024)
            for _ in range(expanded_mib):
                entry.write(block)
    return out.getvalue()


def malware_event(blob_uri: str, verdict: str = "Malicious") -> dict[str, object]:
    """A Defender for Storage ``Microsoft.Security.MalwareScanningResult`` event for ``blob_uri``."""
    return {"id": "e1", "eventType": "Microsoft.Security.MalwareScanningResult", "subject": "s", "topic": "t",
            "dataVersion": "1.0", "data": {"blobUri": blob_uri, "scanResultType": verdict,
                                           "scanFinishedTimeUtc": "2026-11-22T12:00:00Z"}}

"""Small, valid sample files generated in code (no binary fixtures in the repository)."""

from __future__ import annotations

import io
import zipfile
import zlib

from PIL import Image
from pypdf import PdfWriter

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def png(width: int = 4, height: int = 4) -> bytes:
    """A real PNG, written by Pillow (about 70 bytes at 4x4)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (255, 0, 0)).save(out, "PNG")
    return out.getvalue()


def image(kind: str, width: int = 4, height: int = 4) -> bytes:
    """A real image in Pillow format ``kind`` (``PNG``, ``JPEG``, ``GIF``, ``WEBP``)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (0, 128, 255)).save(out, kind)
    return out.getvalue()


def pdf() -> bytes:
    """A real one-page PDF, written by pypdf."""
    writer = PdfWriter()
    writer.add_blank_page(72, 72)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_from(objects: list[bytes], *, trailer: bytes = b"") -> bytes:
    """A PDF with these objects (numbered from 1; object 1 is the catalog) and a correct xref table."""
    out, offsets = b"%PDF-1.7\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return out


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


def pdf_xref_bomb(entries: int = 50_000, array_len: int = 600) -> bytes:
    """About 2 KB: an xref stream listing ``entries`` objects, all at the offset of one large array
    (issue 24: pypdf parses that array once per entry)."""
    out = bytearray(b"%PDF-1.5\n")
    catalog = len(out)
    out += b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    pages = len(out)
    out += b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
    big = len(out)
    out += b"3 0 obj\n[" + b"0 " * array_len + b"]\nendobj\n"
    rows = b"\x00" + bytes(4) + b"\xff\xff" + b"\x01" + catalog.to_bytes(4, "big") + bytes(2)
    rows += b"\x01" + pages.to_bytes(4, "big") + bytes(2) + (b"\x01" + big.to_bytes(4, "big") + bytes(2)) * entries
    return _with_xref_stream(bytes(out), rows, entries + 3)


def _with_xref_stream(body: bytes, rows: bytes, size: int) -> bytes:
    """``body`` with a FlateDecode xref stream (``/W [1 4 2]``, ``rows`` without its own entry) and trailer."""
    at = len(body)
    rows += b"\x01" + at.to_bytes(4, "big") + bytes(2)
    data = zlib.compress(rows, 9)
    return body + (b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R /Filter /FlateDecode /Length %d >>"
                   b"\nstream\n" % (size, size + 1, len(data)) + data
                   + b"\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n" % at)

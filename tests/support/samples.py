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


def heic(width: int = 64, height: int = 48, **save: object) -> bytes:
    """A real HEIC photo, written by pillow-heif (libheif with x265)."""
    import pillow_heif

    out = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (width, height), (200, 120, 40))).save(out, format="HEIF", **save)
    return out.getvalue()


def avif(width: int = 64, height: int = 48) -> bytes:
    """A real AVIF photo, written by Pillow's own AVIF plugin (libavif)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(out, "AVIF")
    return out.getvalue()


def box(kind: bytes, payload: bytes = b"", *, large: bool = False) -> bytes:
    """One ISO base media box: 32-bit size and type, or (``large``) size 1 and a 64-bit size."""
    if large:
        return (1).to_bytes(4, "big") + kind + (16 + len(payload)).to_bytes(8, "big") + payload
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def ftyp(major: bytes = b"isom", *compatible: bytes) -> bytes:
    return box(b"ftyp", major + bytes(4) + b"".join(compatible or (major,)))


def movie(tracks: int = 1) -> bytes:
    """A ``moov`` with a version-0 ``mvhd`` and ``tracks`` ``trak`` boxes holding a ``tkhd``."""
    mvhd = box(b"mvhd", bytes(100))
    return box(b"moov", mvhd + b"".join(box(b"trak", box(b"tkhd", bytes(84))) for _ in range(tracks)))


def mp4(media: bytes = b"\x00" * 64, *, moov_at_end: bool = True, brand: bytes = b"isom",
        compatible: tuple[bytes, ...] = (b"isom", b"iso2", b"avc1", b"mp41")) -> bytes:
    """A structurally valid MP4 (or, with brand ``qt  ``, QuickTime) file: ftyp, mdat, moov."""
    parts = [ftyp(brand, *compatible), box(b"mdat", media), movie()]
    if not moov_at_end:
        parts[1], parts[2] = parts[2], parts[1]
    return b"".join(parts)


# -- office documents, written by the libraries of the test extra ---------------------------------------

def docx() -> bytes:
    import docx as python_docx

    document = python_docx.Document()
    document.add_heading("Quarterly report", 1)
    document.add_paragraph("Numbers went up.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx() -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["name", "amount"])
    book.active.append(["ada", 36])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def pptx() -> bytes:
    import pptx as python_pptx

    deck = python_pptx.Presentation()
    deck.slides.add_slide(deck.slide_layouts[0]).shapes.title.text = "Hello"
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def odf(kind: str) -> bytes:
    from odf.opendocument import OpenDocumentPresentation, OpenDocumentSpreadsheet, OpenDocumentText
    from odf.text import P

    document = {"odt": OpenDocumentText, "ods": OpenDocumentSpreadsheet, "odp": OpenDocumentPresentation}[kind]()
    if kind == "odt":
        document.text.addElement(P(text="Hello"))
    out = io.BytesIO()
    document.write(out)
    return out.getvalue()


def rewrite(data: bytes, change: dict[str, bytes | None]) -> bytes:
    """The package with entries replaced, added or (``None``) removed."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename not in change:
                target.writestr(info, source.read(info))
        for name, body in change.items():
            if body is not None:
                target.writestr(name, body)
    return out.getvalue()


def content_types(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        return package.read("[Content_Types].xml")


def jar() -> bytes:
    return zip_file({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\nMain-Class: Evil\n",
                     "Evil.class": b"\xca\xfe\xba\xbe" + bytes(60)})


def macro_docx() -> bytes:
    """A .docm's parts, declared as a .docx: the content types say macroEnabled, vbaProject.bin is there."""
    data = docx()
    types = content_types(data).replace(
        b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        b"application/vnd.ms-word.document.macroEnabled.main+xml")
    return rewrite(data, {"[Content_Types].xml": types, "word/vbaProject.bin": b"\xd0\xcf\x11\xe0" + bytes(60)})

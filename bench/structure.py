"""What the structure checks read beyond the head, per format (no storage: an in-memory range source
that counts requests, so the figures are valet's and pypdf's/Pillow's/libheif's reading pattern alone).

Videos are real ffmpeg (libx264) MP4s, moov at the end or first (``+faststart``), whose ``mdat`` is padded
to 200 MiB after its samples (the sample offsets stay true), so the walk meets a phone-sized file.

Run: ``.venv/bin/python bench/structure.py`` (needs the test extra: imageio-ffmpeg, pillow-heif, python-docx)
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, NameObject

from tests.support import samples
from tests.support.corpus import padded_video
from valet.validation.structure import DEFAULT_READ_BUDGET, ImageLimits, check_structure

HEAD = 64 * 1024


class Counting:
    def __init__(self, data: bytes) -> None:
        self.data, self.requests, self.bytes = data, 0, 0

    def download_blob(self, offset: int | None = None, length: int | None = None, **kwargs: Any) -> Any:
        chunk = self.data[offset or 0:(offset or 0) + (length or 0)]
        self.requests += 1
        self.bytes += len(chunk)
        return type("Download", (), {"readall": lambda _self: chunk})()


def photo(kind: str) -> bytes:
    """A 12 MP photo with noise in it, so it weighs what a phone's does (a flat one compresses to nothing)."""
    import pillow_heif
    from PIL import Image

    image = Image.merge("RGB", [Image.effect_noise((4032, 3024), 40 + 10 * band) for band in range(3)])
    out = io.BytesIO()
    if kind == "HEIF":
        pillow_heif.from_pillow(image).save(out, format="HEIF", quality=60)
    else:
        image.save(out, "AVIF", quality=60, speed=10)
    return out.getvalue()


def docx() -> bytes:
    import docx as python_docx

    document = python_docx.Document()
    for _ in range(200):
        document.add_paragraph("Numbers went up. " * 20)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pdf(pages: int, stream_bytes: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        content = DecodedStreamObject()
        content.set_data(os.urandom(stream_bytes))
        page[NameObject("/Contents")] = writer._add_object(content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def main() -> None:
    cases = [(f"{kind} 4000x3000", samples.image(kind, 4000, 3000), f"image/{kind.lower()}")
             for kind in ("PNG", "JPEG", "GIF", "WEBP")]
    cases += [("HEIC 4032x3024, noisy (pillow-heif)", photo("HEIF"), "image/heic"),
              ("AVIF 4032x3024, noisy (Pillow)", photo("AVIF"), "image/avif")]
    cases += [("PDF, 30 pages (fits the budget)", pdf(30, 40_000), "application/pdf"),
              ("PDF, 300 pages (over the budget)", pdf(300, 40_000), "application/pdf")]
    cases += [("DOCX (python-docx)", docx(), "application/vnd.openxmlformats-officedocument.wordprocessingml.document")]
    cases += [("MP4 200 MiB, moov at the end (ffmpeg libx264)", padded_video(faststart=False), "video/mp4"),
              ("MP4 200 MiB, moov first (ffmpeg +faststart)", padded_video(faststart=True), "video/mp4")]
    print(f"| file | size | requests beyond the {HEAD // 1024} KiB head | bytes beyond the head | ms | found |")
    print("|---|---:|---:|---:|---:|---|")
    for label, data, mime in cases:
        source = Counting(data)
        started = time.perf_counter()
        report = check_structure(source, len(data), data[:HEAD], mime, ImageLimits(), DEFAULT_READ_BUDGET)
        ms = (time.perf_counter() - started) * 1000
        print(f"| {label} | {len(data):,} B | {source.requests} | {source.bytes:,} | {ms:.0f} | {report.detail} |")


if __name__ == "__main__":
    main()

"""What the structure checks read beyond the head, per format (no storage: an in-memory range source
that counts requests, so the figures are valet's and pypdf's/Pillow's reading pattern alone).

Run: ``.venv/bin/python bench/structure.py``
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
    cases += [("PDF, 30 pages (fits the budget)", pdf(30, 40_000), "application/pdf"),
              ("PDF, 300 pages (over the budget)", pdf(300, 40_000), "application/pdf")]
    print(f"| file | size | requests beyond the {HEAD // 1024} KiB head | bytes beyond the head | ms |")
    print("|---|---:|---:|---:|---:|")
    for label, data, mime in cases:
        source = Counting(data)
        started = time.perf_counter()
        check_structure(source, len(data), data[:HEAD], mime, ImageLimits(), DEFAULT_READ_BUDGET)
        ms = (time.perf_counter() - started) * 1000
        print(f"| {label} | {len(data):,} B | {source.requests} | {source.bytes:,} | {ms:.0f} |")


if __name__ == "__main__":
    main()

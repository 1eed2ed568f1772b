"""A corpus of honest files: every built-in profile's types, each written by a real program or library
installable here (the test extra's writers, the ffmpeg binary that imageio-ffmpeg ships, Chromium, git,
iconv) or found on an ordinary Linux system. Nothing is checked in: the files are made on each run.

``build()`` returns the samples; a producer whose program is missing is reported, not faked. Run it on
its own to write the files and list them::

    .venv/bin/python -m tests.support.corpus /tmp/corpus
"""

from __future__ import annotations

import codecs
import csv
import io
import mailbox
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from PIL import Image

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
ODT, ODS, ODP = (f"application/vnd.oasis.opendocument.{k}" for k in ("text", "spreadsheet", "presentation"))
EXTENSION = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp", "image/heic": "heic",
             "image/heif": "heif", "image/avif": "avif", "application/pdf": "pdf", "text/plain": "txt",
             "text/csv": "csv", DOCX: "docx", XLSX: "xlsx", PPTX: "pptx", ODT: "odt", ODS: "ods", ODP: "odp",
             "application/zip": "zip", "video/mp4": "mp4", "video/quicktime": "mov",
             "application/octet-stream": "bin"}
PROFILE = {"image": "images", "video": "videos", "application/zip": "archives", "application/octet-stream": "large"}
PROSE = {  # what people write in each encoding
    "utf_8": "Grüße aus Köln; naïve café; 日本語のテキスト; Привет\n",
    "utf_8_sig": "Notes saved by Notepad with a byte-order mark: café, Grüße\n",
    "utf_16": "Unicode text as Excel and Notepad save it: 日本語, Ελληνικά\n",
    "utf_16_le": "UTF-16 LE without a mark: Zoë, Ærøskøbing\n",
    "utf_16_be": "UTF-16 BE without a mark: Zoë, Ærøskøbing\n",
    "utf_32": "UTF-32 with a mark: 漢字 and emoji-free text\n",
    "utf_32_le": "UTF-32 LE without a mark: plain words here\n",
    "cp1252": "Windows-1252: café, naïve, déjà vu, “quotes” cost €5\n",
    "latin_1": "ISO-8859-1: Grüße aus Köln, schöne Straße\n",
    "iso8859_15": "ISO-8859-15: l'œuvre coûte 5 €\n",
    "cp1250": "Windows-1250: Zażółć gęślą jaźń, čeština\n",
    "cp1251": "Windows-1251: Привет, как дела? Это русский текст.\n",
    "koi8_r": "KOI8-R: Привет, как дела? Это русский текст.\n",
    "iso8859_7": "ISO-8859-7: Καλημέρα κόσμε, ελληνικά γράμματα\n",
    "shift_jis": "Shift_JIS: 日本語のテキストです。メールの本文。\n",
    "euc_jp": "EUC-JP: 日本語のテキストです。メールの本文。\n",
    "iso2022_jp": "ISO-2022-JP: 日本語のテキストです。メールの本文。\n",
    "euc_kr": "EUC-KR: 안녕하세요 한국어 텍스트입니다\n",
    "gb18030": "GB18030: 你好, 这是中文文本。\n",
    "big5": "Big5: 你好, 這是中文文本。\n",
}


@dataclass(frozen=True)
class Sample:
    producer: str  # the writer and how it was driven, e.g. "ffmpeg (libx264, moov at the end)"
    program: str  # the distinct program or library behind it, e.g. "ffmpeg"
    content_type: str
    data: bytes
    note: str = ""

    @property
    def profile(self) -> str:
        kind = self.content_type.split("/")[0]
        return PROFILE.get(self.content_type) or PROFILE.get(kind) or "documents"

    @property
    def filename(self) -> str:
        label = "".join(ch if ch.isalnum() else "-" for ch in f"{self.program}-{self.note}")[:60].strip("-")
        return f"{label}.{EXTENSION[self.content_type]}"


@dataclass
class Corpus:
    samples: list[Sample] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # producer -> why it could not run

    @property
    def producers(self) -> list[str]:
        return sorted({s.producer for s in self.samples})

    @property
    def programs(self) -> list[str]:
        return sorted({s.program for s in self.samples})


def ffmpeg() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _run(args: list[str], *, timeout: float = 120) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=timeout)


# -- images --------------------------------------------------------------------------------------------------

def _photo(width: int = 320, height: int = 240) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata([((x * 255) // width, (y * 255) // height, 128) for y in range(height) for x in range(width)])
    return image


def pillow() -> Iterator[Sample]:
    for fmt, mime, options in [("PNG", "image/png", {}), ("JPEG", "image/jpeg", {"quality": 85}),
                               ("JPEG", "image/jpeg", {"progressive": True, "quality": 70}),
                               ("GIF", "image/gif", {}), ("WEBP", "image/webp", {"quality": 80}),
                               ("WEBP", "image/webp", {"lossless": True})]:
        out = io.BytesIO()
        _photo().save(out, fmt, **options)
        encoder = {"JPEG": "libjpeg-turbo", "WEBP": "libwebp", "PNG": "zlib", "GIF": "own LZW"}[fmt]
        yield Sample(f"Pillow {fmt} ({encoder})", f"Pillow {fmt}", mime, out.getvalue(), str(options))


def pillow_avif() -> Iterator[Sample]:
    out = io.BytesIO()
    _photo().save(out, "AVIF", quality=60)
    yield Sample("Pillow AVIF (libavif)", "Pillow AVIF", "image/avif", out.getvalue())


def pillow_heif() -> Iterator[Sample]:
    import pillow_heif as heif

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 15"
    for width, height, note in [(320, 240, "small"), (4032, 3024, "12 MP, like a phone camera")]:
        out = io.BytesIO()
        heif.from_pillow(_photo(width, height) if width < 1000 else Image.new("RGB", (width, height), (90, 140, 60))) \
            .save(out, format="HEIF", quality=50, exif=exif.tobytes())
        yield Sample("pillow-heif HEIC (libheif, x265)", "pillow-heif", "image/heic", out.getvalue(), note)
    out = io.BytesIO()
    heif.from_pillow(_photo()).save(out, format="HEIF", quality=50)
    yield Sample("pillow-heif HEIC (libheif, x265)", "pillow-heif", "image/heif", out.getvalue(), "as HEIF")


def ffmpeg_images(tmp: Path) -> Iterator[Sample]:
    exe = ffmpeg()
    source = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=1", "-frames:v", "1"]
    for codec, mime, suffix, extra in [("png", "image/png", "png", []), ("mjpeg", "image/jpeg", "jpg", ["-q:v", "3"]),
                                       ("gif", "image/gif", "gif", []), ("libwebp", "image/webp", "webp", []),
                                       ("libaom-av1", "image/avif", "avif", ["-still-picture", "1", "-crf", "40"]),
                                       ("libsvtav1", "image/avif", "avif", ["-preset", "12"])]:
        target = tmp / f"ffmpeg-still-{codec}.{suffix}"
        _run([exe, "-hide_banner", "-loglevel", "error", "-y", *source, "-c:v", codec, *extra, "-update", "1",
              str(target)])
        program = {"png": "ffmpeg", "mjpeg": "ffmpeg", "gif": "ffmpeg"}.get(codec, f"ffmpeg + {codec}")
        yield Sample(f"ffmpeg {codec} still", program, mime, target.read_bytes(), codec)


def chromium(tmp: Path) -> Iterator[Sample]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise FileNotFoundError("chromium")
    page = tmp / "page.html"
    page.write_text("<html><body><h1>Invoice 42</h1><p>Total: 12.50 EUR</p><table border=1><tr><td>a</td>"
                    "<td>b</td></tr></table></body></html>")
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp / 'chromium-profile'}"]
    pdf, png = tmp / "print.pdf", tmp / "shot.png"
    _run([*flags, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", page.as_uri()])
    yield Sample("Chromium print to PDF (Skia)", "Chromium", "application/pdf", pdf.read_bytes(), "print")
    _run([*flags, f"--screenshot={png}", "--window-size=640,480", page.as_uri()])
    yield Sample("Chromium screenshot PNG", "Chromium", "image/png", png.read_bytes(), "screenshot")


def system_files() -> Iterator[Sample]:
    """Files an ordinary Debian system carries: icons, documentation PDFs, licences, tables."""
    found = {"image/png": sorted(Path("/usr/share").glob("icons/*/*/*/*.png"))[:3]
             + sorted(Path("/usr/share/doc").glob("*/*.png"))[:2],
             "image/gif": sorted(Path("/usr/share/doc").glob("**/*.gif"))[:2],
             "image/jpeg": sorted(Path("/usr/share").glob("**/*.jpg"))[:2],
             "application/pdf": sorted(Path("/usr/share/doc").glob("**/*.pdf"))[:3],
             "text/plain": [p for p in (Path("/usr/share/common-licenses/GPL-3"), Path("/etc/services"),
                                         Path("/usr/share/common-licenses/Apache-2.0")) if p.exists()],
             "text/csv": sorted(Path("/usr/share/distro-info").glob("*.csv"))}
    for mime, paths in found.items():
        for path in paths:
            if 0 < path.stat().st_size <= 20 * 1024 * 1024:
                data = path.read_bytes()
                if mime == "application/pdf":
                    from pypdf import PdfReader

                    producer = str((PdfReader(io.BytesIO(data)).metadata or {}).get("/Producer", "unknown"))
                    yield Sample(f"{producer.split('-')[0]} (a Debian documentation PDF)", producer.split("-")[0],
                                 mime, data, path.name)
                else:
                    yield Sample("Debian system files", "Debian system files", mime, data, path.name)


# -- documents -----------------------------------------------------------------------------------------------

def pdf_writers() -> Iterator[Sample]:
    from fpdf import FPDF
    from pypdf import PdfWriter
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    out = io.BytesIO()
    writer.write(out)
    yield Sample("pypdf", "pypdf", "application/pdf", out.getvalue())
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4)
    page.drawString(72, 770, "Quarterly report: numbers went up.")
    page.showPage()
    page.save()
    yield Sample("reportlab", "reportlab", "application/pdf", out.getvalue())
    document = FPDF()
    document.add_page()
    document.set_font("helvetica", size=12)
    document.cell(text="Meeting notes")
    yield Sample("fpdf2", "fpdf2", "application/pdf", bytes(document.output()))


def text_encodings() -> Iterator[Sample]:
    for encoding, line in PROSE.items():
        data = (line * 30).encode(encoding)
        if encoding.startswith(("utf_16_", "utf_32_")) or encoding == "utf_8_sig":
            pass  # the codec writes (or leaves out) the mark itself
        yield Sample("Python codecs (text in 20 encodings)", "Python codecs", "text/plain", data, encoding)


def csv_writers() -> Iterator[Sample]:
    rows = [["name", "city", "amount"], ["Zoë", "Köln", "3.50"], ["BMW dealer", "München", "12"],
            ["From the shop", "Ærøskøbing", "7"], ["日本", "東京", "1,5"]]
    for encoding, dialect in [("utf_8", "excel"), ("utf_8_sig", "excel"), ("utf_16", "excel-tab"),
                              ("cp1252", "excel"), ("utf_16_le", "excel")]:
        text = io.StringIO()
        csv.writer(text, dialect=dialect).writerows(rows if encoding not in ("cp1252",) else rows[:4])
        yield Sample("Python csv module", "Python csv", "text/csv", text.getvalue().encode(encoding), encoding)
    bmp_like = io.StringIO()
    csv.writer(bmp_like).writerows([["BM25", "score"], ["doc1", "0.3"]])
    yield Sample("Python csv module", "Python csv", "text/csv", bmp_like.getvalue().encode(), "starts with BM")


def pandas_writers() -> Iterator[Sample]:
    import pandas

    frame = pandas.DataFrame({"name": ["ada", "Zoë", "Björk"], "value": [36, 41, 7], "note": ["a, b", "ok", "x"]})
    for encoding, sep in [("utf-8", ","), ("utf-16", "\t"), ("utf-16", ","), ("cp1252", ";"), ("utf-8-sig", ",")]:
        yield Sample("pandas to_csv", "pandas", "text/csv", frame.to_csv(sep=sep, encoding=encoding).encode(encoding),
                     f"{encoding} {sep!r}")
    out = io.BytesIO()
    frame.to_excel(out, index=False, engine="openpyxl")
    yield Sample("pandas to_excel (openpyxl)", "pandas", XLSX, out.getvalue())


def mail_and_patches(tmp: Path) -> Iterator[Sample]:
    path = tmp / "saved.mbox"
    box = mailbox.mbox(str(path))
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "alice@example.com", "bob@example.com", "Minutes"
    message.set_content("The meeting moved to Thursday.\n")
    box.add(message)
    box.flush()
    box.close()
    yield Sample("Python mailbox (mbox)", "Python mailbox", "text/plain", path.read_bytes(), "mbox")
    repo = tmp / "repo"
    repo.mkdir()
    git = shutil.which("git")
    if git is None:
        raise FileNotFoundError("git")
    env = {**os.environ, "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.com", "GIT_COMMITTER_NAME": "A",
           "GIT_COMMITTER_EMAIL": "a@example.com", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    (repo / "parser.py").write_text("def parse(text):\n    return text.split(',')\n")
    for args in (["init", "-q"], ["add", "parser.py"], ["commit", "-q", "-m", "Fix the parser"]):
        subprocess.run([git, *args], cwd=repo, check=True, capture_output=True, env=env, timeout=60)
    patch = subprocess.run([git, "format-patch", "-1", "--stdout"], cwd=repo, check=True, capture_output=True,
                           env=env, timeout=60).stdout
    if not patch.startswith(b"From "):
        raise OSError("git format-patch wrote no patch")
    yield Sample("git format-patch", "git", "text/plain", patch, "patch")
    archive = subprocess.run([git, "archive", "--format=zip", "HEAD"], cwd=repo, check=True,
                             capture_output=True, env=env, timeout=60).stdout
    yield Sample("git archive --format=zip", "git", "application/zip", archive, "archive")


def iconv(tmp: Path) -> Iterator[Sample]:
    exe = shutil.which("iconv")
    if exe is None:
        raise FileNotFoundError("iconv")
    source = tmp / "iconv-source.txt"
    source.write_text("Grüße, 日本語のメール, Привет\n" * 20, encoding="utf-8")
    for target in ("UTF-16", "ISO-2022-JP//TRANSLIT", "UTF-32"):
        out = subprocess.run([exe, "-f", "UTF-8", "-t", target, str(source)], check=True,
                             capture_output=True, timeout=60).stdout
        yield Sample("iconv (glibc)", "iconv", "text/plain", out, target)


def other_programs(tmp: Path) -> Iterator[Sample]:
    """Text and tables written by the other programs of an ordinary system: SQLite's shell, Perl, Node.js."""
    sqlite = shutil.which("sqlite3")
    if sqlite is not None:
        out = subprocess.run([sqlite, "-csv", "-header", ":memory:",
                              "select 'Zoë' as name, 3.5 as amount union all select 'Ærø, DK', 12"],
                             check=True, capture_output=True, timeout=60).stdout
        yield Sample("sqlite3 shell (.mode csv)", "sqlite3", "text/csv", out)
    perl = shutil.which("perl")
    if perl is not None:
        for encoding in ("iso-8859-1", "shiftjis", "iso-2022-jp"):
            script = ("use utf8; use Encode; binmode STDOUT; "
                      f"print encode('{encoding}', \"Perl wrote this: \" . "
                      + ("\"Grüße aus Köln\\n\" x 20);" if encoding == "iso-8859-1" else "\"日本語のテキスト\\n\" x 20);"))
            out = subprocess.run([perl, "-e", script], check=True, capture_output=True, timeout=60).stdout
            yield Sample("Perl Encode", "Perl", "text/plain", out, encoding)
    node = shutil.which("node")
    if node is not None:
        script = ("process.stdout.write(Buffer.concat([Buffer.from([0xff, 0xfe]), "
                  "Buffer.from('name;city\\nZoë;Köln\\nBjörk;Reykjavík\\n', 'utf16le')]))")
        out = subprocess.run([node, "-e", script], check=True, capture_output=True, timeout=60).stdout
        yield Sample("Node.js Buffer (UTF-16 LE CSV)", "Node.js", "text/csv", out)
    if perl is None and sqlite is None and node is None:
        raise FileNotFoundError("sqlite3, perl, node")


def office_writers() -> Iterator[Sample]:
    import docx
    import openpyxl
    import pptx
    import xlsxwriter
    from odf.opendocument import OpenDocumentPresentation, OpenDocumentSpreadsheet, OpenDocumentText
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    document = docx.Document()
    document.add_heading("Report", 1)
    document.add_paragraph("Numbers went up. " * 50)
    document.add_picture(io.BytesIO(_png_bytes()))
    out = io.BytesIO()
    document.save(out)
    yield Sample("python-docx", "python-docx", DOCX, out.getvalue())
    book = openpyxl.Workbook()
    for row in range(200):
        book.active.append([f"row {row}", row, row * 1.5, "=B1*2"])
    out = io.BytesIO()
    book.save(out)
    yield Sample("openpyxl", "openpyxl", XLSX, out.getvalue())
    out = io.BytesIO()
    workbook = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = workbook.add_worksheet()
    for row in range(200):
        sheet.write_row(row, 0, [f"item {row}", row, row / 3])
    workbook.close()
    yield Sample("XlsxWriter", "XlsxWriter", XLSX, out.getvalue())
    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Roadmap"
    slide.placeholders[1].text = "Ship it"
    out = io.BytesIO()
    deck.save(out)
    yield Sample("python-pptx", "python-pptx", PPTX, out.getvalue())
    text = OpenDocumentText()
    text.text.addElement(P(text="Hello from odfpy"))
    spreadsheet = OpenDocumentSpreadsheet()
    table = Table(name="Sheet1")
    for value in range(20):
        row = TableRow()
        cell = TableCell(valuetype="float", value=value)
        row.addElement(cell)
        table.addElement(row)
    spreadsheet.spreadsheet.addElement(table)
    for document_, mime in ((text, ODT), (spreadsheet, ODS), (OpenDocumentPresentation(), ODP)):
        out = io.BytesIO()
        document_.write(out)
        yield Sample("odfpy", "odfpy", mime, out.getvalue(), mime.rsplit(".", 1)[1])


def _png_bytes() -> bytes:
    out = io.BytesIO()
    _photo(64, 48).save(out, "PNG")
    return out.getvalue()


# -- videos, archives, anything -----------------------------------------------------------------------------

VIDEO_RECIPES = [  # (producer, codec arguments, container, extension / mime, note)
    ("libx264, moov at the end", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"], "video/mp4", []),
    ("libx264, faststart", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"], "video/mp4",
     ["-movflags", "+faststart"]),
    ("libx264, fragmented like a browser recorder", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
     "video/mp4", ["-movflags", "frag_keyframe+empty_moov+default_base_moof"]),
    ("libx265 hvc1 in QuickTime, like a phone", ["-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
                                                 "-c:a", "aac"], "video/quicktime", []),
    ("ProRes in QuickTime", ["-c:v", "prores_ks", "-profile:v", "0", "-c:a", "pcm_s16le"], "video/quicktime", []),
    ("MJPEG in QuickTime, like a camera", ["-c:v", "mjpeg", "-q:v", "5", "-c:a", "pcm_s16le"], "video/quicktime", []),
    ("SVT-AV1 in MP4", ["-c:v", "libsvtav1", "-preset", "12", "-c:a", "libopus"], "video/mp4", []),
    ("MPEG-4 Part 2 in MP4", ["-c:v", "mpeg4", "-q:v", "5", "-c:a", "libmp3lame"], "video/mp4", []),
    ("libx264 in the ipod muxer (M4V)", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"], "video/mp4",
     ["-f", "ipod"]),
]


def ffmpeg_videos(tmp: Path) -> Iterator[Sample]:
    exe = ffmpeg()
    source = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15", "-f", "lavfi", "-i", "sine=frequency=440",
              "-t", "2", "-pix_fmt", "yuv420p"]
    for note, codec, mime, extra in VIDEO_RECIPES:
        target = tmp / f"video-{len(note)}-{abs(hash(note)) % 10_000}.{EXTENSION[mime]}"
        pix = ["-pix_fmt", "yuv422p10le"] if "prores" in codec else (["-pix_fmt", "yuvj420p"] if "mjpeg" in codec else [])
        _run([exe, "-hide_banner", "-loglevel", "error", "-y", *source, *codec, *pix, *extra, str(target)])
        library = next((name for name in ("libx264", "libx265", "libsvtav1") if name in codec), "ffmpeg")
        yield Sample(f"ffmpeg ({note})", library if library == "ffmpeg" else f"ffmpeg + {library}", mime,
                     target.read_bytes(), note)


def padded_video(*, faststart: bool, total: int = 200 * 1024 * 1024) -> bytes:
    """A real ffmpeg (libx264) MP4, moov at the end or first, whose media data box is padded after its
    samples to make the file ``total`` bytes (the sample offsets stay true): a phone-sized video."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "v.mp4"
        _run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
              "testsrc2=size=640x360:rate=30", "-t", "10", "-c:v", "libx264", "-preset", "ultrafast",
              *(["-movflags", "+faststart"] if faststart else []), str(target)], timeout=300)
        data = target.read_bytes()
    at = 0
    while data[at + 4 : at + 8] != b"mdat":
        at += int.from_bytes(data[at : at + 4], "big")
    size = int.from_bytes(data[at : at + 4], "big")
    pad = total - len(data)
    return b"".join([data[:at], (size + pad).to_bytes(4, "big"), data[at + 4 : at + size], bytes(pad),
                     data[at + size :]])


def archives(tmp: Path) -> Iterator[Sample]:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("notes/readme.txt", "hello\n" * 100)
        archive.writestr("data/table.csv", "a,b\n1,2\n")
    yield Sample("Python zipfile", "Python zipfile", "application/zip", out.getvalue())
    exe = shutil.which("zip")
    if exe is None:
        raise FileNotFoundError("zip")
    folder = tmp / "to-zip"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("alpha\n" * 50)
    (folder / "b.bin").write_bytes(os.urandom(2048))
    target = tmp / "info-zip.zip"
    subprocess.run([exe, "-q", "-r", str(target), "."], cwd=folder, check=True, capture_output=True,
                   timeout=60)
    yield Sample("Info-ZIP zip", "Info-ZIP", "application/zip", target.read_bytes())
    yield Sample("random bytes (os.urandom)", "os.urandom", "application/octet-stream", os.urandom(100_000))


PRODUCERS: list[tuple[str, Callable[[Path], Iterator[Sample]]]] = [
    ("Pillow", lambda _tmp: pillow()),
    ("Pillow AVIF", lambda _tmp: pillow_avif()),
    ("pillow-heif", lambda _tmp: pillow_heif()),
    ("ffmpeg stills", ffmpeg_images),
    ("Chromium", chromium),
    ("Debian system files", lambda _tmp: system_files()),
    ("PDF writers", lambda _tmp: pdf_writers()),
    ("text encodings", lambda _tmp: text_encodings()),
    ("csv", lambda _tmp: csv_writers()),
    ("pandas", lambda _tmp: pandas_writers()),
    ("mail and patches", mail_and_patches),
    ("iconv", iconv),
    ("sqlite3, Perl, Node.js", other_programs),
    ("office writers", lambda _tmp: office_writers()),
    ("ffmpeg videos", ffmpeg_videos),
    ("archives", archives),
]


def build(tmp: Path | None = None) -> Corpus:
    corpus = Corpus()
    with tempfile.TemporaryDirectory(prefix="valet-corpus-") as scratch:
        work = tmp or Path(scratch)
        for name, producer in PRODUCERS:
            try:
                corpus.samples.extend(producer(work))
            except (ImportError, FileNotFoundError, subprocess.SubprocessError, OSError) as exc:
                corpus.missing[name] = f"{type(exc).__name__}: {exc}"[:200]
    _ = codecs  # the encodings above are codecs' names
    return corpus


def main(argv: list[str]) -> int:
    target = Path(argv[1]) if len(argv) > 1 else Path("corpus-out")
    target.mkdir(parents=True, exist_ok=True)
    corpus = build()
    for number, sample in enumerate(corpus.samples):
        (target / f"{number:03d}-{sample.filename}").write_bytes(sample.data)
    for producer in corpus.producers:
        count = sum(s.producer == producer for s in corpus.samples)
        print(f"{count:3d}  {producer}")
    print(f"{len(corpus.samples)} files from {len(corpus.producers)} producers ({len(corpus.programs)} programs)")
    for name, why in corpus.missing.items():
        print(f"missing: {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

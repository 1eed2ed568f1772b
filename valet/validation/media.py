"""Phone photos and videos, verified from their ISO base media boxes (see :mod:`valet.validation.bmff`).

**HEIC/HEIF and AVIF** (`pillow-heif <https://pypi.org/project/pillow-heif/>`_, the Python binding of
libheif): the top-level boxes must tile the blob and start with ``ftyp``; one ``meta`` box holds the items
and their properties. libheif parses the ``ftyp``/``meta`` boxes (item info, locations, properties and
their associations, the primary item) and says what the file is (``image/heic``, ``image/avif``...) and
how large each top-level image is, from its ``ispe`` property; it decodes pixels only when asked for them,
and valet never asks. Every image must be within the same :class:`ImageLimits` as PNG or JPEG. A photo
within the read budget is read whole (one ranged read beyond the head) so libheif sees the real file;
a larger one is given to libheif as its ``ftyp`` and ``meta`` boxes alone (usually inside the head; one
ranged read otherwise), which is all libheif needs to open it: item data it reads on opening (a grid's
layout) lives in the ``meta`` box's ``idat``. A ``meta`` box larger than the budget fails closed.

**MP4 and QuickTime**: the top-level boxes must tile the blob (no box past its end, nothing after the
last), the brands of ``ftyp`` must be ones of the declared type (QuickTime files older than ``ftyp`` may
start with ``moov``, ``mdat``, ``wide``, ``free`` or ``skip``), there must be exactly one ``moov`` holding
an ``mvhd`` and at least one ``trak``, and media data (``mdat``). Only box headers are read: the head, and
when ``moov`` follows the media data, one ranged read at the end of ``mdat``. No frame is decoded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from valet.validation.bmff import Box, InMemory, Ranges, brands, children, first_box_kind, head_brands, top_level
from valet.validation.reasons import Reason, Rejection

if TYPE_CHECKING:
    from valet.validation.structure import ImageLimits

HEIC, HEIF, AVIF = "image/heic", "image/heif", "image/avif"
MP4, QUICKTIME = "video/mp4", "video/quicktime"
HEIF_TYPES = frozenset({HEIC, HEIF, AVIF})
VIDEO_TYPES = frozenset({MP4, QUICKTIME})
BMFF_TYPES = HEIF_TYPES | VIDEO_TYPES

HEIC_BRANDS = frozenset({"heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs"})
HEIF_BRANDS = frozenset({"mif1", "mif2", "msf1"})
AVIF_BRANDS = frozenset({"avif", "avis"})
QUICKTIME_BRANDS = frozenset({"qt  "})
MP4_BRANDS = frozenset({
    "isom", "iso2", "iso3", "iso4", "iso5", "iso6", "iso7", "iso8", "iso9", "mp41", "mp42", "mp71", "avc1",
    "hvc1", "hev1", "av01", "dash", "cmfc", "cmf2", "M4V ", "M4VH", "M4VP", "MSNV", "mmp4", "f4v ", "XAVC",
    "3gp4", "3gp5", "3gp6", "3gg6", "3g2a", "NDAS", "NDSC", "NDSH", "NDSM", "NDSP", "NDSS", "NDXC", "NDXH",
    "NDXM", "NDXP", "NDXS", "CAEP", "FACE", "MiPr",
})
QUICKTIME_FIRST_BOXES = frozenset({"moov", "mdat", "wide", "free", "skip", "pnot"})
# What libheif's answer may be for each declared type (a HEIC is a HEIF; an AVIF is not declared as one).
HEIF_ANSWERS = {HEIC: {HEIC}, HEIF: {HEIF, HEIC}, AVIF: {AVIF}}
_FTYP_MAX = 4096


def brand_type(head: bytes) -> str | None:
    """Which of the ISO base media types the head's ``ftyp`` brands say the upload is (``None``: none)."""
    found = head_brands(head)
    if found is None:
        return QUICKTIME if first_box_kind(head) in QUICKTIME_FIRST_BOXES else None
    major, every = found
    if every & AVIF_BRANDS:
        return AVIF
    if every & HEIC_BRANDS:
        return HEIC
    if every & HEIF_BRANDS:
        return HEIF
    if major in QUICKTIME_BRANDS or (every & QUICKTIME_BRANDS and not every & MP4_BRANDS):
        return QUICKTIME
    if every & MP4_BRANDS:
        return MP4
    return None


def brand_matches(head: bytes, declared: str) -> bool:
    found = brand_type(head)
    return found == declared or (declared == HEIF and found == HEIC)


def _ftyp(ranges: Ranges, top: list[Box], invalid: Reason) -> tuple[str, set[str]]:
    box = top[0]
    if box.kind != "ftyp" or box.size - box.header > _FTYP_MAX:
        raise Rejection(invalid, "the first box is not a file type box")
    return brands(ranges.read(box.body, box.size - box.header))


# -- photos ------------------------------------------------------------------------------------------------

def check_heif(ranges: Ranges, size: int, mime: str, limits: ImageLimits, budget: int) -> str:
    whole = ranges.read(0, size) if size <= budget else None  # one read beyond the head, then all in memory
    if whole is not None:
        ranges = InMemory(whole)
    top = top_level(ranges, size, invalid=Reason.IMAGE_INVALID)
    _major, every = _ftyp(ranges, top, Reason.IMAGE_INVALID)
    wanted = {HEIC: HEIC_BRANDS, HEIF: HEIF_BRANDS | HEIC_BRANDS, AVIF: AVIF_BRANDS}[mime]
    if not every & wanted:
        raise Rejection(Reason.IMAGE_INVALID, f"brands {sorted(every)} are not {mime}")
    metas = [box for box in top if box.kind == "meta"]
    if len(metas) != 1:
        raise Rejection(Reason.IMAGE_INVALID, f"{len(metas)} meta boxes")
    if whole is not None:
        data = whole
    elif metas[0].size <= budget:  # libheif opens a photo from its ftyp and meta boxes, wherever meta lies
        data = ranges.read(0, top[0].size) + ranges.read(metas[0].offset, metas[0].size)
    else:
        raise Rejection(Reason.STRUCTURE_UNVERIFIABLE, "HEIF metadata larger than the read budget")
    import pillow_heif  # here, not at import: the grant side imports the brand tables above, never libheif

    try:
        answer = pillow_heif.get_file_mimetype(data)
        heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=False)
        sizes = [image.size for image in heif]  # from each image's ispe property: nothing is decoded
    except (ValueError, RuntimeError, OSError, KeyError, TypeError, IndexError, EOFError) as exc:
        raise Rejection(Reason.IMAGE_INVALID, f"not a valid {mime} image ({type(exc).__name__})") from exc
    if answer not in HEIF_ANSWERS[mime]:
        raise Rejection(Reason.IMAGE_INVALID, f"libheif reads it as {answer or 'unknown'}, not {mime}")
    if not sizes:
        raise Rejection(Reason.IMAGE_INVALID, "no image in the file")
    for width, height in [*sizes, *_extents(ranges, metas[0])]:
        if width < 1 or height < 1 or max(width, height) > limits.max_dimension:
            raise Rejection(Reason.IMAGE_LIMITS, f"{width}x{height}; limit {limits.max_dimension} per side")
        if width * height > limits.max_pixels:
            raise Rejection(Reason.IMAGE_LIMITS, f"{width}x{height} pixels; limit {limits.max_pixels}")
    width, height = sizes[0]
    return f"{answer.split('/')[1].upper()} {width}x{height}, {len(sizes)} image(s)"


def _extents(ranges: Ranges, meta: Box) -> list[tuple[int, int]]:
    """Every ``ispe`` (image spatial extents) property in ``meta/iprp/ipco``: the coded size of each image,
    tile and thumbnail, which a crop (``clap``) can make larger than the size libheif reports."""
    found: list[tuple[int, int]] = []
    for properties in (box for box in children(ranges, meta, invalid=Reason.IMAGE_INVALID, skip=4, limit=256)
                       if box.kind == "iprp"):
        for container in (box for box in children(ranges, properties, invalid=Reason.IMAGE_INVALID, limit=64)
                          if box.kind == "ipco"):
            for prop in children(ranges, container, invalid=Reason.IMAGE_INVALID):
                body = ranges.read(prop.body, 12) if prop.kind == "ispe" else b""
                if len(body) == 12:
                    found.append((int.from_bytes(body[4:8], "big"), int.from_bytes(body[8:12], "big")))
    return found


# -- videos ------------------------------------------------------------------------------------------------

def check_video(ranges: Ranges, size: int, mime: str) -> str:
    invalid = Reason.VIDEO_INVALID
    top = top_level(ranges, size, invalid=invalid)
    if not top:
        raise Rejection(invalid, "no boxes")
    if top[0].kind == "ftyp":
        major, every = _ftyp(ranges, top, invalid)
        if mime == MP4 and (major in QUICKTIME_BRANDS or not every & MP4_BRANDS):
            raise Rejection(invalid, f"brands {sorted(every)} are not MP4")
        if mime == QUICKTIME and not (every & QUICKTIME_BRANDS):
            raise Rejection(invalid, f"brands {sorted(every)} are not QuickTime")
    elif mime != QUICKTIME or top[0].kind not in QUICKTIME_FIRST_BOXES:
        raise Rejection(invalid, f"starts with '{top[0].kind}', not a file type box")
    if sum(box.kind == "ftyp" for box in top) > 1:
        raise Rejection(invalid, "more than one file type box")
    movies = [box for box in top if box.kind == "moov"]
    if len(movies) != 1:
        raise Rejection(invalid, f"{len(movies)} movie boxes")
    if not any(box.kind == "mdat" for box in top):
        raise Rejection(invalid, "no media data")
    inside = children(ranges, movies[0], invalid=invalid, limit=256)
    tracks = sum(box.kind == "trak" for box in inside)
    if not any(box.kind == "mvhd" for box in inside) or tracks == 0:
        raise Rejection(invalid, "the movie box has no header or no track")
    where = "at the end" if top.index(movies[0]) > max(i for i, b in enumerate(top) if b.kind == "mdat") else "first"
    return f"{'MP4' if mime == MP4 else 'QuickTime'}, {len(top)} boxes, {tracks} track(s), moov {where}"

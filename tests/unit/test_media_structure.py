"""Phone photos (HEIC/HEIF/AVIF) and videos (MP4/QuickTime) decided from their boxes (issue 27): honest
files from real writers pass, crafted ones are refused, and a video costs the head plus at most one read
of the tail. Pure: an in-memory range source that counts what it serves."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from tests.support import samples
from tests.support.samples import box, ftyp, movie, mp4
from valet.validation.bmff import HeadAndTail, top_level
from valet.validation.reasons import Reason, Rejection
from valet.validation.sniff import decide_type
from valet.validation.structure import ImageLimits, check_structure

HEAD = 64 * 1024
PHONE = {"image/heic": ("heic",), "image/heif": ("heif",), "image/avif": ("avif",), "image/jpeg": ("jpg",),
         "video/mp4": ("mp4",), "video/quicktime": ("mov",)}


class Counting:
    def __init__(self, data: bytes) -> None:
        self.data, self.requests, self.bytes = data, 0, 0

    def download_blob(self, offset: int | None = None, length: int | None = None, **kwargs: Any) -> Any:
        chunk = self.data[offset or 0:(offset or 0) + (length or 0)]
        self.requests += 1
        self.bytes += len(chunk)
        return type("Download", (), {"readall": lambda _self: chunk})()


def decide(data: bytes, mime: str, *, head: int = HEAD, limits: ImageLimits | None = None) -> tuple[str, Counting]:
    """Both steps the validator runs: the type from the head, then the structure."""
    verdict = decide_type(data[:head], mime, PHONE)
    if verdict.reason is not None:
        raise Rejection(verdict.reason, verdict.detail)
    source = Counting(data)
    report = check_structure(source, len(data), data[:head], mime, limits or ImageLimits())
    assert (report.requests, report.bytes_read) == (source.requests, source.bytes)
    return report.detail, source


def refused(data: bytes, mime: str, **kwargs: Any) -> Rejection:
    with pytest.raises(Rejection) as info:
        decide(data, mime, **kwargs)
    return info.value


# -- photos ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "mime", "expect"), [
    (samples.heic(640, 480), "image/heic", "HEIC 640x480"),
    (samples.heic(640, 480), "image/heif", "HEIC 640x480"),  # a HEIC is a HEIF
    (samples.avif(640, 480), "image/avif", "AVIF 640x480"),  # no AV1 decoder here: nothing is decoded
])
def test_real_photos_pass_from_their_boxes(data: bytes, mime: str, expect: str) -> None:
    detail, source = decide(data, mime)
    assert detail.startswith(expect)
    assert source.requests == 0  # the head holds it
    detail, source = decide(data, mime, head=64)
    assert detail.startswith(expect)  # within the budget: the rest is read whole, once
    assert source.requests == 1 and source.bytes == len(data) - 64


def test_a_photo_with_its_meta_box_after_the_media_data_opens_from_ftyp_and_meta() -> None:
    data = samples.heic(640, 480)
    assert data[4:8] == b"ftyp" and data[32:36] == b"meta"
    meta_size = int.from_bytes(data[28:32], "big")
    ftyp_box, meta_box, rest = data[:28], data[28:28 + meta_size], data[28 + meta_size:]
    moved = ftyp_box + rest + meta_box  # mdat first, meta last: iloc offsets are stale, libheif opens all the same
    source = Counting(moved)
    report = check_structure(source, len(moved), moved[:64], "image/heic", ImageLimits(), meta_size + 8)
    assert report.detail.startswith("HEIC 640x480") and source.requests == 1  # the window at the meta box


def test_a_large_photo_is_read_up_to_its_meta_box_only() -> None:
    data = samples.heic(640, 480)
    detail, source = decide(data, "image/heic", head=HEAD)
    meta_end = data.index(b"mdat") - 4
    source = Counting(data)  # a budget smaller than the file: libheif gets ftyp + meta, never the media data
    report = check_structure(source, len(data), data[:meta_end + 16], "image/heic", ImageLimits(), meta_end)
    assert report.detail == detail and source.requests == 0


@pytest.mark.parametrize(("make", "mime", "reason"), [
    # a HEIC whose ftyp lies: heic brands, then an MP4's boxes (no meta)
    (lambda: ftyp(b"heic", b"mif1", b"heic") + movie() + box(b"mdat", bytes(64)), "image/heic", Reason.IMAGE_INVALID),
    # heic brands on a PNG's bytes
    (lambda: ftyp(b"heic", b"mif1", b"heic") + samples.png(), "image/heic", Reason.IMAGE_INVALID),
    # heic brands, a meta box of garbage
    (lambda: ftyp(b"heic", b"mif1", b"heic") + box(b"meta", bytes(4) + b"\xff" * 60), "image/heic",
     Reason.IMAGE_INVALID),
    # an AVIF declared HEIC, and the other way round
    (lambda: samples.avif(), "image/heic", Reason.TYPE_MISMATCH),
    (lambda: samples.heic(), "image/avif", Reason.TYPE_MISMATCH),
    # an MP4 declared as a photo
    (lambda: mp4(), "image/heic", Reason.TYPE_MISMATCH),
    # a real HEIC with a box size past the end, and with a zip appended
    (lambda: samples.heic()[:-10], "image/heic", Reason.IMAGE_INVALID),
    (lambda: samples.heic() + samples.zip_file({"a.txt": b"hi"}), "image/heic", Reason.IMAGE_INVALID),
    # HTML hidden in a free box of the head
    (lambda: samples.heic()[:0] + ftyp(b"heic", b"mif1", b"heic") + box(b"free", b"<html><body>x</body></html>"),
     "image/heic", Reason.POLYGLOT),
])
def test_crafted_photos_are_refused(make: Any, mime: str, reason: Reason) -> None:
    assert refused(make(), mime).reason is reason


@pytest.mark.parametrize(("width", "height", "reason"), [(40000, 300, Reason.IMAGE_LIMITS),
                                                         (16000, 9000, Reason.IMAGE_LIMITS)])
def test_photo_dimensions_are_held_to_the_image_limits(width: int, height: int, reason: Reason) -> None:
    data = samples.heic(64, 48)
    at = data.index(b"ispe")  # the primary image's spatial extents property: claim a bomb's canvas
    bomb = data[:at + 8] + struct.pack(">II", width, height) + data[at + 16:]
    assert refused(bomb, "image/heic").reason is reason


# -- videos ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "mime"), [
    (mp4(), "video/mp4"),
    (mp4(moov_at_end=False), "video/mp4"),
    (mp4(brand=b"qt  ", compatible=(b"qt  ",)), "video/quicktime"),
    (box(b"wide") + box(b"mdat", bytes(32)) + movie(), "video/quicktime"),  # QuickTime from before ftyp
    (ftyp(b"mp42", b"isom", b"mp42") + movie() + box(b"mdat", bytes(10), large=True), "video/mp4"),
    (ftyp(b"isom") + movie() + b"".join(box(b"moof", bytes(8)) + box(b"mdat", bytes(16)) for _ in range(5)),
     "video/mp4"),  # fragmented
])
def test_videos_that_tile_their_blob_pass(data: bytes, mime: str) -> None:
    detail, _ = decide(data, mime)
    assert detail.startswith("MP4" if mime == "video/mp4" else "QuickTime")


@pytest.mark.parametrize(("data", "mime", "reason"), [
    (mp4()[:-5], "video/mp4", Reason.VIDEO_INVALID),  # a box size past the end of the blob
    (ftyp(b"isom") + box(b"mdat", bytes(8))[:4] + struct.pack(">I", 1 << 30)[:0] + b"mdat" + movie(), "video/mp4",
     Reason.VIDEO_INVALID),
    (mp4() + samples.zip_file({"a.txt": b"x"}), "video/mp4", Reason.VIDEO_INVALID),  # something after the last box
    (mp4() + bytes(5), "video/mp4", Reason.VIDEO_INVALID),
    (ftyp(b"isom") + box(b"mdat", bytes(64)), "video/mp4", Reason.VIDEO_INVALID),  # no moov
    (ftyp(b"isom") + box(b"mdat") + movie() + movie(), "video/mp4", Reason.VIDEO_INVALID),  # two
    (ftyp(b"isom") + box(b"mdat") + box(b"moov", box(b"mvhd", bytes(100))), "video/mp4", Reason.VIDEO_INVALID),
    (ftyp(b"isom") + movie(), "video/mp4", Reason.VIDEO_INVALID),  # no media data
    (mp4(brand=b"qt  ", compatible=(b"qt  ",)), "video/mp4", Reason.TYPE_MISMATCH),  # a MOV declared MP4
    (mp4(), "video/quicktime", Reason.TYPE_MISMATCH),
    (samples.heic(), "video/mp4", Reason.TYPE_MISMATCH),
    (samples.png(), "video/mp4", Reason.TYPE_NOT_ALLOWED),
    (ftyp(b"isom") + box(b"mdat", b"\x00" * 8 + b"<html><script>x</script>") + movie(), "video/mp4",
     Reason.POLYGLOT),
])
def test_crafted_videos_are_refused(data: bytes, mime: str, reason: Reason) -> None:
    assert refused(data, mime).reason is reason


def test_moov_at_the_end_costs_the_head_and_one_read_of_the_tail() -> None:
    data = mp4(bytes(50 * 1024 * 1024))
    detail, source = decide(data, "video/mp4")
    assert detail.endswith("moov at the end")
    assert source.requests == 1 and source.bytes == len(data) - (len(data) - len(movie()))  # the moov only


def test_a_walk_that_needs_too_many_reads_fails_closed() -> None:
    fragments = b"".join(box(b"moof", bytes(8)) + box(b"mdat", bytes(2 * 1024 * 1024)) for _ in range(20))
    data = ftyp(b"isom") + movie() + fragments
    assert refused(data, "video/mp4").reason is Reason.STRUCTURE_UNVERIFIABLE


def test_head_and_tail_serve_the_head_without_a_request() -> None:
    data = mp4(bytes(4096))
    source = Counting(data)
    ranges = HeadAndTail(source, len(data), data)
    assert [b.kind for b in top_level(ranges, len(data), invalid=Reason.VIDEO_INVALID)] == ["ftyp", "mdat", "moov"]
    assert source.requests == 0

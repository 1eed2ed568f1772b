"""The README and docs/ link to each other: every relative link names a file that exists, and every
``#anchor`` a heading of its target, as GitHub spells heading anchors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text without fenced code blocks: headings and links in code are not headings and links."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower case, without punctuation, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[`*]|(?<!\w)_|_(?!\w)", "", text)  # code and emphasis marks
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(prose(path.read_text("utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        result.add(base if n == 0 else f"{base}-{n}")
    return result


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text("utf-8"))) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_links(path):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with this anchor in {dest.name}")
    return broken


def test_the_slugs_are_githubs() -> None:
    assert slug("`POST /api/uploads` — request an upload grant") == "post-apiuploads--request-an-upload-grant"
    assert slug("Where the tests' Azurite comes from") == "where-the-tests-azurite-comes-from"
    assert slug("`valet dev`: the local stack") == "valet-dev-the-local-stack"
    assert slug("Malware scanning (optional)") == "malware-scanning-optional"
    assert slug("`VALET_AUTH_ISSUERS` and **keys**") == "valet_auth_issuers-and-keys"


def test_a_missing_file_or_heading_is_reported(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n", "utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-section) [gone](missing.md) [bad](other.md#no-such)\n"
        "[here](#page) [not here](#nowhere) [web](https://example.com/x#y)\n"
        "```\n[in code](missing-too.md)\n```\n",
        "utf-8",
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#no-such: no heading with this anchor in other.md",
        "#nowhere: no heading with this anchor in page.md",
    ]


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    assert relative_links(page), f"{page.name} links nowhere"
    assert not broken_links(page)


def test_the_readme_links_every_docs_page_and_stays_a_front_door() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in relative_links(README)}
    assert {p.resolve() for p in DOCS} <= linked, [p.name for p in DOCS if p.resolve() not in linked]
    assert len(README.read_text("utf-8").splitlines()) <= 250


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_every_docs_page_has_a_title_and_links_to_related_pages(page: Path) -> None:
    text = page.read_text("utf-8")
    assert text.startswith("# "), f"{page.name}: no title"
    others = {t.partition("#")[0] for t in relative_links(page)} - {"", page.name}
    assert others, f"{page.name}: no link to a related page"

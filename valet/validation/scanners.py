"""Malware scanners: a small Protocol, and the built-in reader of Microsoft Defender for Storage results.

Defender for Storage scans each upload on its own and reports twice: an Event Grid event
(``Microsoft.Security.MalwareScanningResult``, handled by :mod:`valet.validation.malware`) and, when the
account is configured for it, a blob index tag ``Malware Scanning scan result`` on the scanned blob. The
validator honours the tag when it is already there at decision time; the event quarantines whatever the
validator accepted before the scan finished. Other engines plug in as another :class:`Scanner`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

DEFENDER_TAG = "Malware Scanning scan result"
DEFENDER_MALICIOUS = "Malicious"
DEFENDER_CLEAN = "No threats found"


class Verdict(StrEnum):
    CLEAN = "clean"
    MALICIOUS = "malicious"


@dataclass(frozen=True)
class ScanSubject:
    """What a scanner may look at: the blob's name, size, index tags and head (the sniff window)."""

    container: str
    name: str
    size: int
    tags: Mapping[str, str]
    head: bytes


@dataclass(frozen=True)
class ScanResult:
    scanner: str
    verdict: Verdict
    detail: str = ""


class Scanner(Protocol):
    name: str

    def scan(self, subject: ScanSubject) -> ScanResult | None:
        """A verdict, or ``None`` when this scanner has none (yet). Raise to make the decision retry."""
        ...


class DefenderTagScanner:
    """Reads Defender for Storage's blob index tag. No tag means no verdict (the event may come later)."""

    name = "defender"

    def scan(self, subject: ScanSubject) -> ScanResult | None:
        # Names valet reads are matched case-insensitively, tags included (a proxy or tool may change case).
        value = next((v for k, v in subject.tags.items() if k.lower() == DEFENDER_TAG.lower()), None)
        if value is None:
            return None
        return ScanResult(self.name, defender_verdict(value), value)


def defender_verdict(value: str) -> Verdict:
    """Defender's result string as a verdict. Anything other than the clean answer counts as malicious:
    an unexpected value must not let a file through."""
    return Verdict.CLEAN if value.strip().lower() == DEFENDER_CLEAN.lower() else Verdict.MALICIOUS


SCANNERS: dict[str, type[DefenderTagScanner]] = {"defender": DefenderTagScanner}

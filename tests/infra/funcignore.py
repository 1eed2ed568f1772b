"""The deployment package as ``.funcignore`` describes it: gitignore syntax (azd's "service packaging ignore
files" and Core Tools both read it that way), matched here without a library so the rules are on one page.

* blank lines and ``#`` comments are skipped; ``\\#`` and ``\\!`` escape a leading character;
* ``!`` re-includes what an earlier pattern excluded, but never a path under an excluded directory
  (an excluded directory is not entered at all);
* a trailing ``/`` matches directories only; a pattern with a ``/`` elsewhere is anchored at the folder of
  ``.funcignore``, one without matches a name at any depth;
* ``*`` and ``?`` never match ``/``; ``**/``, ``/**`` and ``/**/`` match any number of folders; the last
  matching pattern decides.

``tests/infra/test_package.py`` checks this reading against git's own on the same tree.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rule:
    pattern: str
    regex: re.Pattern[str]
    negated: bool
    directories_only: bool


def _glob(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("/.*")
            i += 3
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def parse(text: str) -> list[Rule]:
    rules = []
    for raw in text.splitlines():
        line = raw.rstrip()  # (an escaped trailing space, "\\ ", is not supported; .funcignore has none)
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        if negated:
            line = line[1:]
        elif line.startswith(("\\#", "\\!")):
            line = line[1:]
        directories_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        line = line.removeprefix("/")
        prefix = "" if anchored else "(?:[^/]*/)*"
        rules.append(Rule(raw, re.compile(f"{prefix}{_glob(line)}", re.DOTALL), negated, directories_only))
    return rules


def excluded(rules: list[Rule], path: str, *, is_dir: bool) -> bool:
    """Whether ``path`` (relative, with ``/``) is left out, given that no folder above it is."""
    verdict = False
    for rule in rules:
        if rule.directories_only and not is_dir:
            continue
        if rule.regex.fullmatch(path):
            verdict = not rule.negated
    return verdict


def deployment_files(root: Path, ignore_file: str = ".funcignore") -> list[str]:
    """The files a deployment of ``root`` carries, relative and sorted; excluded folders are not entered."""
    rules = parse((root / ignore_file).read_text("utf-8"))
    files = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder).relative_to(root).as_posix()
        prefix = "" if here == "." else f"{here}/"
        dirs[:] = sorted(d for d in dirs if not excluded(rules, prefix + d, is_dir=True))
        files += [prefix + n for n in names if not excluded(rules, prefix + n, is_dir=False)]
    return sorted(files)

"""Every error code the API and the clients can emit is in the errors tables of docs/api.md, and every code
those tables list is one the code can emit: the codes are read from the source, so a new one cannot ship
undocumented.

What counts as emitting a code: the ``code`` of a ``ValetError`` subclass, a string given as ``code=`` or
as a snake_case positional argument to an error class or to a function that returns one (and to the
dev host's ``_problem``), a string assigned to a variable named ``code``, or the value of a ``"code"`` key
in a dict literal; in the JavaScript module, the code argument of ``new ValetError(...)`` and what is
assigned to ``code``. A code built in an f-string is expanded by :data:`TEMPLATES` (``f"storage_{status}"`` reads as
``storage_<status>``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "api.md"
CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*(?:_<\.\.\.>)?")
# What each code built in an f-string can be (a new f-string code fails the test until it is added here).
TEMPLATES = {
    "apikey_<...>": {"apikey_expired", "apikey_revoked"},  # KeyRecord.state(): active, revoked, expired
    "storage_<...>": {"storage_<status>"},  # valet-client: storage's HTTP status after the last retry
    "http_<...>": {"http_<status>"},  # valet-client: an error answer without problem+json
}


def _constants(node: ast.AST) -> set[str]:
    """The string constants an expression can evaluate to: a constant, an f-string (:data:`TEMPLATES`), the
    branches of ``a if c else b`` / ``a or b``, what ``str(x)`` wraps, the default of ``m.get(k, default)``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.JoinedStr):
        text = "".join(str(part.value) if isinstance(part, ast.Constant) else "<...>" for part in node.values)
        assert not CODE.fullmatch(text) or "<" not in text or text in TEMPLATES, f"teach TEMPLATES {text!r}"
        return TEMPLATES.get(text, {text})
    if isinstance(node, ast.IfExp):
        return _constants(node.body) | _constants(node.orelse)
    if isinstance(node, ast.BoolOp):
        return {value for operand in node.values for value in _constants(operand)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "str" and node.args:
        return _constants(node.args[0])
    if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get" and len(node.args) == 2:
        return _constants(node.args[1])  # mapping.get(key, default): the default
    return set()


def _codes(values: set[str]) -> set[str]:
    return {value for value in values if CODE.fullmatch(value) or value.endswith("_<status>")}


def _error_makers(trees: list[ast.Module], roots: set[str]) -> tuple[set[str], set[str]]:
    """(error classes: ``roots`` and their subclasses, functions annotated to return one of them)."""
    classes = set(roots)
    grown = True
    while grown:
        grown = False
        for tree in trees:
            for node in ast.walk(tree):
                if (isinstance(node, ast.ClassDef) and node.name not in classes
                        and any(isinstance(b, ast.Name) and b.id in classes for b in node.bases)):
                    classes.add(node.name)
                    grown = True
    functions = {node.name for tree in trees for node in ast.walk(tree)
                 if isinstance(node, ast.FunctionDef) and node.returns is not None
                 and {n.id for n in ast.walk(node.returns) if isinstance(n, ast.Name)} & classes}
    return classes, functions


def python_codes(files: list[Path], roots: set[str], extra_makers: frozenset[str] = frozenset()) -> set[str]:
    trees = [ast.parse(path.read_text("utf-8")) for path in files]
    classes, functions = _error_makers(trees, roots)
    makers = classes | functions | extra_makers
    found: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in classes:
                for statement in node.body:
                    targets = statement.targets if isinstance(statement, ast.Assign) else (
                        [statement.target] if isinstance(statement, ast.AnnAssign) else [])
                    value = getattr(statement, "value", None)
                    if value is not None and any(isinstance(t, ast.Name) and t.id == "code" for t in targets):
                        found |= _codes(_constants(value))
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "code" for t in node.targets):
                found |= _codes(_constants(node.value))
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "code":
                        found |= _codes(_constants(value))
            elif isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name not in makers:
                    continue
                found |= {v for kw in node.keywords if kw.arg == "code" for v in _codes(_constants(kw.value))}
                found |= {v for arg in node.args for v in _codes(_constants(arg))}
    return found


def _call_arguments(text: str, start: int) -> list[str]:
    """The top-level arguments of the call whose opening parenthesis is at ``start`` (strings, template
    literals and nested brackets skipped)."""
    args, depth, current, i, quote = [], 0, [], start + 1, ""
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == "\\":
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
            current.append(ch)
        elif ch in "([{":
            depth += 1
            current.append(ch)
        elif ch in ")]}" and depth:
            depth -= 1
            current.append(ch)
        elif ch == ")":
            args.append("".join(current).strip())
            return args
        elif ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    raise AssertionError(f"unbalanced call at {start}")


def javascript_codes(path: Path) -> set[str]:
    text = path.read_text("utf-8")
    found: set[str] = set()
    for match in re.finditer(r"new ValetError\(", text):
        args = _call_arguments(text, match.end() - 1)
        if len(args) > 1:
            found |= _codes(set(re.findall(r'"([^"\\]*)"', args[1])))
    for match in re.finditer(r"\bconst code = ([^;]*);", text):
        found |= _codes(set(re.findall(r'"([^"\\]*)"', match.group(1))))
    return found


def api_codes() -> set[str]:
    files = [*sorted((ROOT / "valet").rglob("*.py")), ROOT / "function_app.py"]
    return python_codes(files, {"ValetError"}, frozenset({"_problem"}))


def client_codes() -> set[str]:
    python = python_codes(sorted((ROOT / "clients" / "python" / "valet_client").glob("*.py")), {"UploadError"},
                          frozenset({"UploadError"}))
    return python | javascript_codes(ROOT / "clients" / "js" / "valet-upload.js")


def documented(section: str, end: str) -> set[str]:
    text = PAGE.read_text("utf-8")
    part = text[text.index(section): text.index(end, text.index(section))]
    rows = [line.split("|")[2] for line in part.splitlines() if line.startswith("| ") and line.count("|") >= 3]
    return {code for row in rows for code in re.findall(r"`([a-z][a-z0-9_]*(?:<status>)?)`", row)}


def documented_api() -> set[str]:
    return documented("## Errors", "### Codes the clients add")


def documented_clients() -> set[str]:
    return documented("### Codes the clients add", "\n## ")


def test_the_collector_finds_codes_of_every_kind() -> None:
    api, clients = api_codes(), client_codes()
    assert {"invalid_blob_uri", "invalid_upload_id", "upload_exists", "storage_unavailable", "invalid_token",
            "bad_request", "function_failed", "too_many_failures", "idp_unavailable"} <= api
    assert {"storage_unreachable", "storage_certificate_unverified", "grant_expired", "storage_<status>",
            "http_<status>", "network_error", "storage_error", "certificate_unverified", "timeout"} <= clients


def test_every_code_the_api_emits_is_in_the_errors_table() -> None:
    assert not api_codes() - documented_api()


def test_the_errors_table_lists_no_code_the_api_does_not_emit() -> None:
    assert not documented_api() - api_codes()


def test_every_code_the_clients_add_is_documented() -> None:
    assert not client_codes() - api_codes() - documented_clients()


def test_the_clients_table_lists_no_code_the_clients_do_not_emit() -> None:
    assert not documented_clients() - client_codes()

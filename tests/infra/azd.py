"""What azd does with infra/main.parameters.json before it deploys, reproduced so tests can feed it real values.

Read from Azure/azure-dev, ``cli/azd/pkg/infra/provisioning/bicep/bicep_provider.go`` (``loadParameters``,
``evalParamEnvSubst``, ``armParameterFileValue``; commit ae35809f, August 2026; the array/object path arrived in
#6694, first released in azd 1.23.4), and drone/envsubst v1.0.3 (the substitution library azd uses):

1. The file is parsed as JSON first, then each parameter is handled on its own.
2. Path A: an ``array`` or ``object`` parameter whose value is a string: envsubst on that string alone, and the
   result is parsed as JSON (an error names the parameter). An unset variable that leaves "" omits the parameter.
3. Path B, every other parameter: the parameter (``{"value": ...}``) is serialized back to JSON, envsubst runs on
   that JSON text with the raw environment values, and the text is parsed again ("error unmarshalling Bicep
   template parameters"). A value holding ``"`` or ``\\`` therefore breaks it, or silently changes it.
   A string parameter that comes out "" because its variable is unset is left out.
4. ``armParameterFileValue``: a ``bool`` or ``int`` parameter accepts a string that parses as one; a ``string``
   parameter left empty falls back to its default (or to a prompt when it has none).
5. drone/envsubst: ``${VAR}`` is the value or ""; ``${VAR=default}``, ``${VAR:=default}`` and ``${VAR:-default}``
   give the default when the value is empty (unset and empty are the same to it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(=|:=|:-)([^}]*))?\}")


class AzdError(Exception):
    """azd stops before deploying (the message says which step)."""


def envsubst(text: str, env: Mapping[str, str]) -> tuple[str, bool]:
    """drone/envsubst on ``text``, for the forms the parameter file uses; (result, some variable was unset)."""
    unset = False

    def one(match: re.Match[str]) -> str:
        nonlocal unset
        name, operator, default = match.groups()
        if name not in env:
            unset = True
        value = env.get(name, "")
        return default if operator and value == "" else value

    result = _REFERENCE.sub(one, text)
    if "${" in _REFERENCE.sub("", text):
        raise ValueError(f"a substitution form this reproduction does not cover: {text!r}")
    return result, unset


def _go_marshal(obj: Any) -> str:
    # encoding/json escapes <, > and & (and U+2028/U+2029) in strings; nothing else differs for these values.
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def _file_value(kind: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str):
        return value
    if kind == "bool":  # Go's strconv.ParseBool
        if value in ("1", "t", "T", "TRUE", "true", "True"):
            return True
        if value in ("0", "f", "F", "FALSE", "false", "False"):
            return False
        return None
    if kind == "int":
        return int(value) if re.fullmatch(r"[+-]?\d+", value) else None
    if kind == "string":
        if value != "":
            return value
        return value if isinstance(default, str) and value != default else None
    return value


def load_parameters(parameter_file: str, types: Mapping[str, str], defaults: Mapping[str, Any],
                    env: Mapping[str, str]) -> dict[str, Any]:
    """The parameter values azd would deploy with: ``types`` and ``defaults`` come from the template (Bicep
    types: string, int, bool, array, object). A parameter missing here would be the template's default, or a
    prompt when there is none."""
    try:
        document = json.loads(parameter_file)
    except json.JSONDecodeError as exc:
        raise AzdError(f"error unmarshalling Bicep template parameters: {exc}") from exc
    resolved: dict[str, Any] = {}
    for name, parameter in document["parameters"].items():
        kind = types.get(name)
        raw = parameter.get("value")
        if kind in ("array", "object") and isinstance(raw, str):  # path A
            replaced, unset = envsubst(raw, env)
            if replaced == "" and unset:
                continue
            try:
                resolved[name] = json.loads(replaced)
            except json.JSONDecodeError as exc:
                raise AzdError(f"substituting parameter '{name}' ({kind}): {exc}: value is not valid JSON") from exc
            continue
        replaced, unset = envsubst(_go_marshal(parameter), env)  # path B
        try:
            value = json.loads(replaced).get("value")
        except json.JSONDecodeError as exc:
            raise AzdError(f"error unmarshalling Bicep template parameters: {exc}") from exc
        if value is None or (value == "" and unset):  # an empty string from an unset variable is left out
            continue
        value = _file_value(kind or "string", value, defaults.get(name))
        if value is not None:
            resolved[name] = value
    return resolved

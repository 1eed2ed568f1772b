"""infra/*.bicep as pycep parses them, and a small evaluator for the expressions the tests look at.

pycep turns a template into JSON: parameters, variables, resources (symbolic name -> type, config) and
outputs. Identifiers and string literals both come out as plain strings, so :meth:`Template.value` treats a
string as a reference when it names a parameter, variable or loop item, and as a literal otherwise. Resource
properties Azure only knows after deployment (``identity.properties.clientId``, ``uploadsAccount.name``, ...)
come from the ``known`` mapping a test passes in.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
_INTERPOLATION = re.compile(r"\$\{([^}]+)\}")


@cache
def parse(name: str) -> dict[str, Any]:
    return BicepParser(cache=False).parse(file_path=INFRA / name)  # type: ignore[return-value]


class Unknown(Exception):
    """An expression the evaluator cannot (or was not told how to) evaluate."""


class Template:
    def __init__(self, name: str, known: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> None:
        self.name = name
        self.doc = parse(name)
        self.known = dict(known or {})
        self.param_values = dict(params or {})

    @property
    def parameters(self) -> dict[str, Any]:
        return self.doc.get("parameters", {})

    @property
    def variables(self) -> dict[str, Any]:
        return self.doc.get("variables", {})

    @property
    def resources(self) -> dict[str, Any]:
        return self.doc.get("resources", {})

    @property
    def outputs(self) -> dict[str, Any]:
        return self.doc.get("outputs", {})

    def resource(self, symbol: str) -> dict[str, Any]:
        """A resource's body (for a conditional resource, the body inside the condition)."""
        config = self.resources[symbol]["config"]
        return config["config"] if "condition" in config and "config" in config else config

    def condition(self, symbol: str) -> Any:
        config = self.resources[symbol]["config"]
        return config.get("condition") if "config" in config else None

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {s: self.resource(s) for s, r in self.resources.items() if r["type"] == resource_type}

    def var(self, name: str) -> Any:
        return self.value(self.variables[name]["value"])

    def value(self, node: Any, scope: dict[str, Any] | None = None) -> Any:
        scope = scope or {}
        if isinstance(node, str):
            return self._string(node, scope)
        if isinstance(node, bool | int | float) or node is None:
            return node
        if isinstance(node, list):
            return [self.value(item, scope) for item in node]
        if isinstance(node, dict) and "function" in node:
            return self._function(node["function"], scope)
        if isinstance(node, dict) and "operator" in node:
            return self._operator(node["operator"], scope)
        if isinstance(node, dict):
            return {key.strip("'"): self.value(item, scope) for key, item in node.items()}  # 'quoted-keys'
        raise Unknown(repr(node))

    def _string(self, text: str, scope: dict[str, Any]) -> Any:
        if text in scope:
            return scope[text]
        if text in self.param_values:
            return self.param_values[text]
        if text in self.parameters:
            if self.parameters[text].get("default") is None:
                raise Unknown(f"parameter {text} has no value")
            return self.value(self.parameters[text]["default"], scope)
        if text in self.variables:
            return self.value(self.variables[text]["value"], scope)
        if text in self.known:
            return self.known[text]
        return _INTERPOLATION.sub(lambda m: str(self._path(m.group(1).strip(), scope)), text)

    def _path(self, dotted: str, scope: dict[str, Any]) -> Any:
        if dotted in self.known:
            return self.known[dotted]
        head, _, rest = dotted.partition(".")
        base = self._string(head, scope) if head in scope or head in self.parameters or head in self.variables else None
        if base is None:
            raise Unknown(dotted)
        for part in rest.split(".") if rest else []:
            base = base[part]
        return base

    def _accessor(self, node: Any) -> str:
        if isinstance(node, str):
            return node
        operands = node["operator"]["operands"]
        return f"{self._accessor(operands['operand_1'])}.{self._accessor(operands['operand_2'])}"

    def _operator(self, op: dict[str, Any], scope: dict[str, Any]) -> Any:
        kind, operands = op["type"], op["operands"]
        if kind == "property_accessor":
            return self._path(self._accessor({"operator": op}), scope)
        if kind == "conditional":
            chosen = "true_value" if self.value(operands["condition"], scope) else "false_value"
            return self.value(operands[chosen], scope)
        if kind == "not":
            return not self.value(operands["bool_value"], scope)
        raise Unknown(kind)

    def _function(self, fn: dict[str, Any], scope: dict[str, Any]) -> Any:
        kind, args = fn["type"], fn.get("parameters") or {}
        if kind == "join":
            return str(self.value(args["delimiter"], scope)).join(self.value(args["input_array"], scope))
        if kind == "empty":
            return not self.value(args["item_to_test"], scope)
        if kind == "union":
            merged: dict[str, Any] = {}
            for key in sorted(args):
                merged.update(self.value(args[key], scope))
            return merged
        if kind == "split":
            return str(self.value(args["input_string"], scope)).split(self.value(args["delimiter"], scope))
        if kind == "string":  # ARM's string(): JSON for arrays and objects (compact), the text for a string
            converted = self.value(args["value_to_convert"], scope)
            return converted if isinstance(converted, str) else json.dumps(converted, separators=(",", ":"))
        raise Unknown(kind)


def role_assignments(template: Template) -> list[dict[str, Any]]:
    """Each role assignment as (scope symbol, role, principal, conditional); a role is a built-in role's
    GUID or the symbolic name of a role definition in the template."""
    roles = template.var("roles")
    found = []
    for symbol, body in template.of_type("Microsoft.Authorization/roleAssignments").items():
        props = body["properties"]
        role_node = props["roleDefinitionId"]
        if "function" in role_node:  # subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.x)
            params = role_node["function"]["parameters"]
            assert params["resource_type"] == "Microsoft.Authorization/roleDefinitions"
            role = template.value(params["resource_name_1"])
            assert role in roles.values(), f"{symbol}: role {role} is not one of the named built-in roles"
        else:  # customRole.id
            role = template._accessor(role_node).removesuffix(".id")
        principal = template._accessor(props["principalId"])
        found.append({"symbol": symbol, "scope": body.get("scope"), "role": role, "principal": principal,
                      "conditional": template.condition(symbol) is not None,
                      "principalType": props.get("principalType")})
    return found


# ---------------------------------------------------------------------------------------------------------
# Deploy-time constants (what Bicep's BCP178 and BCP120 are about)
# ---------------------------------------------------------------------------------------------------------

# The properties of a resource symbol Bicep can compute when the deployment starts; anything else
# (``properties.*``, ``outputs.*``, the whole object) is only known once the resource is deployed.
DEPLOY_TIME_PROPERTIES = frozenset({"id", "name", "type", "apiVersion"})
_ACCESS = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*|\(\))*)")
_RUNTIME_FUNCTIONS = re.compile(r"\b(list[A-Za-z]*|reference)\s*\(")


def runtime_references(doc: dict[str, Any], node: Any, _seen: frozenset[str] = frozenset()) -> list[str]:
    """The runtime values ``node`` reads, directly or through variables: each as ``symbol.property...``
    (``identity.properties.clientId``, ``via valetSettings: ...``). Empty when Bicep can compute the
    expression at the start of the deployment. Parameters, loop items and functions such as
    ``subscription()`` or ``uniqueString()`` are deploy-time values; ``list*()`` and ``reference()`` are not."""
    symbols = set(doc.get("resources", {})) | set(doc.get("modules", {}))
    variables = doc.get("variables", {})
    found: list[str] = []

    def via_variable(name: str) -> None:
        if name in variables and name not in _seen:
            found.extend(f"via {name}: {ref}" for ref in runtime_references(
                doc, variables[name]["value"], _seen | {name}))

    def accessor_path(n: Any) -> list[str] | None:
        if isinstance(n, str):
            return [n]
        if isinstance(n, dict) and n.get("operator", {}).get("type") == "property_accessor":
            ops = n["operator"]["operands"]
            head, tail = accessor_path(ops["operand_1"]), accessor_path(ops["operand_2"])
            return head + tail if head is not None and tail is not None else None
        return None

    def text(s: str) -> None:
        if s in symbols:  # the whole resource object
            found.append(s)
            return
        if s in variables:
            via_variable(s)
            return
        for expression in re.findall(r"\$\{(.*?)\}", s):
            if _RUNTIME_FUNCTIONS.search(expression):
                found.append(expression.strip())
            for head, rest in _ACCESS.findall(expression):
                parts = [p for p in rest.split(".") if p]
                if head in symbols and (not parts or parts[0] not in DEPLOY_TIME_PROPERTIES):
                    found.append(head + rest)
                elif head in variables:
                    via_variable(head)

    def walk(n: Any) -> None:
        if isinstance(n, str):
            text(n)
        elif isinstance(n, list):
            for item in n:
                walk(item)
        elif isinstance(n, dict) and n.get("operator", {}).get("type") == "property_accessor":
            path = accessor_path(n)
            if path is None:
                walk(n["operator"]["operands"])
            elif path[0] in symbols:
                if path[1] not in DEPLOY_TIME_PROPERTIES:
                    found.append(".".join(path))
            elif path[0] in variables:
                via_variable(path[0])
        elif isinstance(n, dict) and "function" in n:
            kind = str(n["function"].get("type", ""))
            if kind.startswith("list") or kind == "reference":
                found.append(f"{kind}()")
            walk(n["function"].get("parameters") or {})
        elif isinstance(n, dict):
            for value in n.values():
                walk(value)

    walk(node)
    return found


def for_expressions(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every ``for`` expression in a parsed template: (where, the expression it iterates over)."""
    found: list[tuple[str, Any]] = []

    def walk(n: Any, where: str) -> None:
        if isinstance(n, dict):
            if "loop_type" in n:
                found.append((where, n["loop_type"]))
            for key, value in n.items():
                walk(value, f"{where}.{key}")
        elif isinstance(n, list):
            for i, item in enumerate(n):
                walk(item, f"{where}[{i}]")

    for section in ("variables", "resources", "modules", "outputs"):
        for name, body in doc.get(section, {}).items():
            walk(body, f"{section}.{name}")
    return found

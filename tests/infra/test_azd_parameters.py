"""infra/main.parameters.json as azd reads it (tests/infra/azd.py reproduces azd's substitution), fed with every
example value the README and docs/ give for the azd environment, down to the app settings valet loads.

A string parameter gets its raw value pasted into the JSON text of the parameter file, so a value holding ``"``
(the documented VALET_AUTH_ISSUERS) used to stop ``azd provision`` with "error unmarshalling Bicep template
parameters"; an array parameter's value is parsed as JSON on its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra.azd import AzdError, envsubst, load_parameters
from tests.infra.bicep import INFRA, ROOT, parse
from tests.infra.test_app_settings import app_settings, hook_secrets, resolved
from tests.infra.test_hooks import PREPROVISION, calls, fake_tool, run
from valet.settings import Settings

PARAMETER_FILE = (INFRA / "main.parameters.json").read_text()
TENANT_ID = "11111111-2222-3333-4444-555555555555"
API_APP_ID = "66666666-7777-8888-9999-000000000000"
SIGNED_IN_USER = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def template_parameters() -> tuple[dict[str, str], dict[str, Any]]:
    params = parse("main.bicep")["parameters"]
    return {n: p["type"] for n, p in params.items()}, {n: p.get("default") for n, p in params.items()}


def mapped_variables() -> dict[str, str]:
    """parameter -> the azd environment variable its value names."""
    mapped = {}
    for name, parameter in json.loads(PARAMETER_FILE)["parameters"].items():
        [variable] = re.findall(r"\$\{([A-Z_]+)", parameter["value"])
        mapped[name] = variable
    return mapped


def documented_examples() -> list[tuple[str, str]]:
    """(variable, value) for every `azd env set` in the README and docs/, as the shell passes it (with stand-ins
    for the `az` calls and shell variables they use), and every VALET_AUTH_ISSUERS example block."""
    text = "\n".join(page.read_text() for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    stubs = ('azd() { python3 -c \'import json, sys; print(json.dumps(sys.argv[1:]))\' "$@"; }\n'
             f'az() {{ echo {SIGNED_IN_USER}; }}\nTENANT_ID={TENANT_ID}\nAPI_APP_ID={API_APP_ID}\n')
    examples = []
    for command in re.findall(r"^\s*(azd env set [A-Z_]+ .+)$|`(azd env set [A-Z_]+ [^`]+)`", text, re.M):
        line = command[0] or command[1]
        out = subprocess.run(["sh", "-c", stubs + line], capture_output=True, text=True, timeout=30, check=True,
                             env={"PATH": os.environ["PATH"]}).stdout
        args = json.loads(out)
        assert args[:2] == ["env", "set"] and len(args) == 4, line
        examples.append((args[2], args[3]))
    for block in re.findall(r"```json\n(VALET_AUTH_ISSUERS=.*?)```", text, re.S):
        examples.append(("VALET_AUTH_ISSUERS", " ".join(block.split("=", 1)[1].split())))
    return examples


def base_env() -> dict[str, str]:
    """What azd's environment holds after `azd env new` and the preprovision hook."""
    return {"AZURE_ENV_NAME": "valet-dev", "AZURE_LOCATION": "swedencentral",
            "VALET_VAULT_GENERATION": "20261201T091500Z", **hook_secrets()}


EXAMPLES = documented_examples()


def test_the_docs_give_examples_for_every_optional_setting() -> None:
    variables = {v for v, _ in EXAMPLES}
    assert {"VALET_AUTH_ISSUERS", "VALET_CORS_ORIGINS", "VALET_MALWARE_SCANNING", "VALET_KEYS_ADMIN_PRINCIPAL_ID",
            "AZURE_LOCATION", "VALET_GRANT_SIGNING_KEYS"} <= variables
    assert sum(1 for v, _ in EXAMPLES if v == "VALET_AUTH_ISSUERS") >= 2
    assert any('"' in value for v, value in EXAMPLES if v == "VALET_AUTH_ISSUERS")


def after_preprovision(env: dict[str, str], bin_dir: Path) -> dict[str, str]:
    """`azd up` runs the preprovision hook before it loads the parameters; what the hook sets joins the env."""
    log = fake_tool(bin_dir, "azd", "exit 0")
    result = run(PREPROVISION, bin_dir, **env)
    assert result.returncode == 0, result.stderr
    return {**env, **{args[2]: args[3] for args in calls(log)}}


@pytest.mark.parametrize(("variable", "value"), EXAMPLES, ids=[f"{v}-{i}" for i, (v, _) in enumerate(EXAMPLES)])
def test_azd_passes_every_documented_example_through_unchanged(variable: str, value: str, tmp_path: Path) -> None:
    types, defaults = template_parameters()
    env = after_preprovision({**base_env(), variable: value}, tmp_path)
    if value == "":  # `azd env set X ""` asks the hook for a new value
        assert env[variable] != ""
        value = env[variable]
    loaded = load_parameters(PARAMETER_FILE, types, defaults, env)
    for parameter, mapped in mapped_variables().items():
        if mapped != variable:
            continue
        kind = types[parameter]
        expected: Any = {"array": json.loads(value) if kind == "array" else None,
                         "bool": value == "true", "int": int(value) if kind == "int" else None,
                         "string": value}[kind]
        assert loaded[parameter] == expected, parameter


def test_every_string_parameter_survives_azds_substitution() -> None:
    """The rule behind the VALET_AUTH_ISSUERS failure, for every string parameter: no example value the docs
    give may change (or break) when azd pastes it into the JSON text."""
    types, defaults = template_parameters()
    mapped = mapped_variables()
    checked = 0
    for parameter, variable in mapped.items():
        if types[parameter] != "string":
            continue
        values = [v for name, v in EXAMPLES if name == variable] + [base_env().get(variable, "")]
        for value in filter(None, values):
            loaded = load_parameters(PARAMETER_FILE, types, defaults, {**base_env(), variable: value})
            assert loaded[parameter] == value, (parameter, value)
            checked += 1
    assert checked >= 6  # location, environment name, both secrets, origins, admin id, generation


@pytest.mark.parametrize("value", [v for name, v in EXAMPLES if name == "VALET_AUTH_ISSUERS"])
def test_documented_issuers_reach_the_app_as_settings_valet_loads(value: str) -> None:
    value = re.sub(r"<[a-z-]+>", TENANT_ID, value)  # the docs' placeholders (<tenant-id>, ...): a GUID
    types, defaults = template_parameters()
    loaded = load_parameters(PARAMETER_FILE, types, defaults, {**base_env(), "VALET_AUTH_ISSUERS": value})
    env = resolved(app_settings(authIssuers=loaded["authIssuers"]))
    issuers = Settings.from_env(env).auth.issuers
    assert [i.issuer for i in issuers] == [entry["issuer"] for entry in json.loads(value)]


def test_without_optional_values_azd_uses_the_templates_defaults() -> None:
    types, defaults = template_parameters()
    loaded = load_parameters(PARAMETER_FILE, types, defaults, base_env())
    assert loaded["authIssuers"] == []  # ${VALET_AUTH_ISSUERS=[]}
    assert loaded["enableMalwareScanning"] is False and loaded["malwareScanningCapGBPerMonth"] == 100
    assert "corsOrigins" not in loaded and "keysAdminPrincipalId" not in loaded  # unset: the default ''
    assert {"environmentName", "location", "grantSigningKeys", "apiKeyPepper", "vaultGeneration"} <= set(loaded)
    assert {n for n, d in defaults.items() if d is None} <= set(loaded)  # nothing azd would have to prompt for


# The reproduction itself, on the cases the azd source distinguishes.

def test_reproduction_breaks_a_string_parameter_holding_a_quote() -> None:
    text = json.dumps({"parameters": {"p": {"value": "${X}"}}})
    with pytest.raises(AzdError, match="unmarshalling"):
        load_parameters(text, {"p": "string"}, {}, {"X": '[{"issuer": "x"}]'})
    # and a backslash is taken as a JSON escape
    assert load_parameters(text, {"p": "string"}, {}, {"X": r"a\tb"}) == {"p": "a\tb"}


def test_reproduction_parses_an_array_parameter_as_json() -> None:
    text = json.dumps({"parameters": {"p": {"value": "${X=[]}"}}})
    assert load_parameters(text, {"p": "array"}, {}, {"X": '[{"issuer": "x"}]'}) == {"p": [{"issuer": "x"}]}
    assert load_parameters(text, {"p": "array"}, {}, {}) == {"p": []}
    with pytest.raises(AzdError, match="not valid JSON"):
        load_parameters(text, {"p": "array"}, {}, {"X": "https://a.example.com"})


def test_reproduction_substitutes_like_drone_envsubst() -> None:
    assert envsubst("${A}-${B=x}-${C:-y}-${D:=z}", {"A": "1", "B": ""}) == ("1-x-y-z", True)
    with pytest.raises(ValueError, match="does not cover"):
        envsubst("${A#prefix}", {})

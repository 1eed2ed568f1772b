"""The azd hooks (infra/hooks/*.sh), run with stand-ins for `azd` and `az` on PATH: what they would ask
Azure to do, without Azure."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA
from valet.auth.settings import AuthSettings
from valet.grants.token import GrantKeyRing

PREPROVISION = INFRA / "hooks" / "preprovision.sh"
POSTDEPLOY = INFRA / "hooks" / "postdeploy.sh"
POSTDOWN = INFRA / "hooks" / "postdown.sh"


def fake_tool(bin_dir: Path, name: str, script: str) -> Path:
    """A stand-in command that logs its arguments (one JSON list per line) and runs ``script``."""
    log = bin_dir / f"{name}.log"
    tool = bin_dir / name
    tool.write_text(f'#!/bin/sh\npython3 -c \'import json, sys; print(json.dumps(sys.argv[1:]))\' "$@" >> {log}\n'
                    f"{script}\n")
    tool.chmod(0o755)
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def run(hook: Path, bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(["sh", str(hook)], env=environ, capture_output=True, text=True, timeout=60, check=False)


def test_preprovision_creates_both_secrets_and_a_vault_generation_once(tmp_path: Path) -> None:
    log = fake_tool(tmp_path, "azd", "exit 0")
    assert run(PREPROVISION, tmp_path).returncode == 0
    made = {args[2]: args[3] for args in calls(log)}
    assert [args[:2] for args in calls(log)] == [["env", "set"]] * 3
    ring = GrantKeyRing.parse(made["VALET_GRANT_SIGNING_KEYS"], setting="VALET_GRANT_SIGNING_KEYS")
    assert ring.active.startswith("k") and len(ring.all_keys()[0]) == 32
    assert AuthSettings.from_env({"VALET_APIKEY_PEPPER": made["VALET_APIKEY_PEPPER"]}).apikey_pepper is not None
    assert re.fullmatch(r"\d{8}T\d{6}Z", made["VALET_VAULT_GENERATION"])

    log.unlink()
    existing = run(PREPROVISION, tmp_path, VALET_GRANT_SIGNING_KEYS="k1:x", VALET_APIKEY_PEPPER="y",
                   VALET_VAULT_GENERATION="20261201T000000Z")
    assert existing.returncode == 0 and calls(log) == []  # never replaces a secret or the vault in use


def test_after_azd_down_the_next_deployment_gets_a_new_vault_generation(tmp_path: Path) -> None:
    """`azd down` leaves the purge-protected vault soft-deleted, its name reserved: postdown empties the
    generation, and the next preprovision makes a new one (so a new vault name), keeping the secrets."""
    log = fake_tool(tmp_path, "azd", "exit 0")
    assert run(POSTDOWN, tmp_path, VALET_VAULT_GENERATION="20261201T000000Z").returncode == 0
    assert calls(log) == [["env", "set", "VALET_VAULT_GENERATION", ""]]
    log.unlink()
    again = run(PREPROVISION, tmp_path, VALET_GRANT_SIGNING_KEYS="k1:x", VALET_APIKEY_PEPPER="y",
                VALET_VAULT_GENERATION="")
    assert again.returncode == 0
    [[_, _, name, value]] = calls(log)
    assert name == "VALET_VAULT_GENERATION" and value not in ("", "20261201T000000Z")


def test_azure_yaml_runs_every_hook_script() -> None:
    text = (INFRA.parent / "azure.yaml").read_text()
    for hook in sorted((INFRA / "hooks").glob("*.sh")):
        assert f"  {hook.stem}:\n" in text and f"run: infra/hooks/{hook.name}" in text, hook.name


@pytest.mark.parametrize("origins", ["*", "https://app.example.com,*", "https://*.example.com"])
def test_preprovision_refuses_a_wildcard_origin(tmp_path: Path, origins: str) -> None:
    log = fake_tool(tmp_path, "azd", "exit 0")
    result = run(PREPROVISION, tmp_path, VALET_CORS_ORIGINS=origins)
    assert result.returncode == 1 and "'*' is refused" in result.stderr
    assert calls(log) == []


def test_preprovision_refuses_spaces_in_the_origin_list(tmp_path: Path) -> None:
    fake_tool(tmp_path, "azd", "exit 0")
    result = run(PREPROVISION, tmp_path, VALET_CORS_ORIGINS="https://a.example.com, https://b.example.com")
    assert result.returncode == 1 and "without spaces" in result.stderr


AZD_OUTPUTS = {"AZURE_RESOURCE_GROUP": "rg-dev", "AZURE_FUNCTION_APP_NAME": "func-valet-abc",
               "VALET_UPLOADS_TOPIC_NAME": "evgt-valet-uploads-abc", "VALET_UPLOADS_CONTAINER": "uploads",
               "VALET_KEY_WAIT_SECONDS": "0"}


def test_postdeploy_waits_for_the_blob_key_then_deploys_the_subscriptions(tmp_path: Path) -> None:
    # The first key listing has no blobs_extension yet (the host has not started); the second has it.
    counter = tmp_path / "count"
    log = fake_tool(tmp_path, "az", f"""
case "$1 $2" in
  "functionapp keys")
    n=$(cat {counter} 2>/dev/null || echo 0); echo $((n + 1)) > {counter}
    if [ "$n" -ge 1 ]; then echo '{{"blobs_extension": "k"}}'; else echo '{{}}'; fi ;;
esac""")
    result = run(POSTDEPLOY, tmp_path, **AZD_OUTPUTS)
    assert result.returncode == 0, result.stderr
    listings = [c for c in calls(log) if c[:3] == ["functionapp", "keys", "list"]]
    assert len(listings) == 2
    [deployment] = [c for c in calls(log) if c[:3] == ["deployment", "group", "create"]]
    assert Path(deployment[deployment.index("--template-file") + 1]).resolve() == INFRA / "eventgrid.bicep"
    assert deployment[deployment.index("--resource-group") + 1] == "rg-dev"
    params = deployment[deployment.index("--parameters") + 1:deployment.index("--output")]
    assert params == ["functionAppName=func-valet-abc", "uploadsTopicName=evgt-valet-uploads-abc",
                      "uploadsContainer=uploads", "malwareTopicName="]


def test_postdeploy_with_malware_scanning_also_needs_the_event_grid_key(tmp_path: Path) -> None:
    log = fake_tool(tmp_path, "az", """
case "$1 $2" in "functionapp keys") echo '{"blobs_extension": "k"}' ;; esac""")
    result = run(POSTDEPLOY, tmp_path, **AZD_OUTPUTS, VALET_MALWARE_TOPIC_NAME="evgt-valet-malware-abc",
                 VALET_KEY_WAIT_TRIES="3")
    assert result.returncode == 1 and "azd hooks run postdeploy" in result.stderr
    assert not [c for c in calls(log) if c[:2] == ["deployment", "group"]]


def test_postdeploy_outside_azd_says_so(tmp_path: Path) -> None:
    result = run(POSTDEPLOY, tmp_path)
    assert result.returncode != 0 and "AZURE_RESOURCE_GROUP" in result.stderr

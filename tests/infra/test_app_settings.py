"""The app settings infra/resources.bicep gives the function app against what valet's settings loader reads.

The template's settings are evaluated as Azure would set them (resource names and the identity's client id
stand in for values only Azure knows; Key Vault references are replaced by secrets from the preprovision
hook, as the platform resolves them), then loaded with ``Settings.from_env``: a deployment cannot miss a
required setting, set one the app ignores, or set one to a value the app refuses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest

from tests.infra.bicep import INFRA, Template
from valet.audit import settings as audit_settings
from valet.auth.settings import AuthSettings
from valet.errors import ConfigurationError
from valet.settings import REQUIRED_SETTINGS, Settings, TriggerSettings, setting_names

CLIENT_ID = "5a1f0c0e-3c57-4d0a-9a55-0c6f1d2b7e11"
KNOWN = {
    "uploadsAccount.name": "stvaletabcdefghijklm",
    "hostAccount.name": "stfuncabcdefghijklm",
    "storageSuffix": "core.windows.net",
    "identity.properties.clientId": CLIENT_ID,
    "grantKeysSecret.properties.secretUri": "https://kv-valet-x.vault.azure.net/secrets/valet-grant-signing-keys",
    "pepperSecret.properties.secretUri": "https://kv-valet-x.vault.azure.net/secrets/valet-apikey-pepper",
    "appInsights.properties.ConnectionString": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
}
KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(SecretUri=(https://[^)]+/secrets/([a-z0-9-]+))\)$")


def hook_secrets() -> dict[str, str]:
    out = subprocess.run(["sh", str(INFRA / "hooks" / "preprovision.sh"), "--print"], check=True,
                         capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]}).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def template(**params: Any) -> Template:
    return Template("resources.bicep", known=KNOWN, params=params)


def app_settings(**params: Any) -> dict[str, str]:
    """Every app setting, as the function app gets it: the `appsettings` config child of the app (the whole set;
    Azure replaces the app's settings with it)."""
    t = template(**params)
    [(symbol, config)] = t.of_type("Microsoft.Web/sites/config").items()
    assert (config["parent"], config["name"]) == ("functionApp", "appsettings"), symbol
    assert "appSettings" not in t.resource("functionApp")["properties"]["siteConfig"]  # one place only
    merged = t.value(config["properties"])
    assert all(isinstance(value, str) for value in merged.values())  # app settings are strings
    return dict(merged)


def resolved(settings: dict[str, str]) -> dict[str, str]:
    """Key Vault references replaced by the secrets the vault would hold."""
    secrets = hook_secrets()
    by_secret = {"valet-grant-signing-keys": secrets["VALET_GRANT_SIGNING_KEYS"],
                 "valet-apikey-pepper": secrets["VALET_APIKEY_PEPPER"]}
    out = {}
    for name, value in settings.items():
        match = KEY_VAULT_REFERENCE.match(value)
        out[name] = by_secret[match.group(2)] if match else value
    return out


def valet_only(settings: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in settings.items() if k.startswith("VALET_")}


def all_setting_names() -> set[str]:
    audit = {v for v in vars(audit_settings).values() if isinstance(v, str) and v.startswith("VALET_")}
    return set(setting_names()) | audit


def test_template_sets_only_settings_valet_reads_and_every_required_one() -> None:
    names = set(valet_only(app_settings()))
    known = all_setting_names()
    assert names <= known, f"settings valet would ignore: {sorted(names - known)}"
    assert REQUIRED_SETTINGS <= names


def test_template_settings_load() -> None:
    env = resolved(app_settings())
    settings = Settings.from_env(env)
    assert settings.storage.account_url == "https://stvaletabcdefghijklm.blob.core.windows.net"
    assert (settings.storage.credential, settings.storage.client_id) == ("managedidentity", CLIENT_ID)
    assert settings.auth.issuers == () and settings.auth.apikeys_enabled
    assert settings.cors_origins == ()
    assert settings.validation.scanners == ()
    trigger = TriggerSettings.from_env(env)
    assert (trigger.source, trigger.connection, trigger.uploads_container) == ("EventGrid", "ValetStorage", "uploads")


@pytest.mark.parametrize("name", sorted(REQUIRED_SETTINGS))
def test_without_a_required_setting_the_app_cannot_start(name: str) -> None:
    env = resolved(app_settings())
    del env[name]
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env(env)


def test_parameters_reach_the_settings() -> None:
    issuers = [{"issuer": "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0",
                "audiences": ["api://valet"]}]
    env = resolved(app_settings(authIssuers=issuers, corsOrigins=["https://app.example.com"],
                                enableMalwareScanning=True))
    assert json.loads(env["VALET_AUTH_ISSUERS"]) == issuers  # string(authIssuers): the list as JSON
    settings = Settings.from_env(env)
    assert [i.audiences for i in settings.auth.issuers] == [("api://valet",)]
    assert settings.cors_origins == ("https://app.example.com",)
    assert settings.validation.scanners == ("defender",)


def test_secrets_are_key_vault_references_to_the_templates_secrets() -> None:
    settings = app_settings()
    for name, secret in (("VALET_GRANT_SIGNING_KEYS", "valet-grant-signing-keys"),
                         ("VALET_APIKEY_PEPPER", "valet-apikey-pepper")):
        match = KEY_VAULT_REFERENCE.match(settings[name])
        assert match and match.group(2) == secret, name
    t = template()
    assert t.resource("functionApp")["properties"]["keyVaultReferenceIdentity"] == {
        "operator": {"type": "property_accessor", "operands": {"operand_1": "identity", "operand_2": "id"}}}
    assert {t.value(t.resource(s)["name"]) for s in ("grantKeysSecret", "pepperSecret")} == {
        "valet-grant-signing-keys", "valet-apikey-pepper"}


def test_containers_in_settings_are_the_containers_the_template_creates() -> None:
    settings, t = app_settings(), template()
    containers = {t.value(c["name"]) for c in t.of_type(
        "Microsoft.Storage/storageAccounts/blobServices/containers").values()}
    for name in ("VALET_UPLOADS_CONTAINER", "VALET_ACCEPTED_CONTAINER", "VALET_QUARANTINE_CONTAINER",
                 "VALET_APIKEY_CONTAINER", "VALET_AUDIT_CONTAINER"):
        assert settings[name] in containers
    assert audit_settings.AuditSettings.from_env(settings).container == "audit"
    assert settings["VALET_APIKEY_CONTAINER"] == AuthSettings().apikey_container


def test_host_and_trigger_connections_are_identity_based() -> None:
    settings = app_settings()
    connection = settings["VALET_TRIGGER_CONNECTION"]
    for prefix, account in (("AzureWebJobsStorage", "stfuncabcdefghijklm"), (connection, "stvaletabcdefghijklm")):
        assert settings[f"{prefix}__blobServiceUri"] == f"https://{account}.blob.core.windows.net"
        assert settings[f"{prefix}__queueServiceUri"] == f"https://{account}.queue.core.windows.net"
        assert settings[f"{prefix}__credential"] == "managedidentity"
        assert settings[f"{prefix}__clientId"] == CLIENT_ID
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == f"ClientId={CLIENT_ID};Authorization=AAD"
    # No key-bearing connection string anywhere; Flex Consumption sets the runtime itself and refuses these.
    assert "AzureWebJobsStorage" not in settings
    assert not any("AccountKey=" in v or "SharedAccessSignature=" in v for v in settings.values())
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"} & set(settings)
    others = {k for k in settings if not k.startswith("VALET_")}
    assert all(k.startswith(("AzureWebJobsStorage__", f"{connection}__", "APPLICATIONINSIGHTS_")) for k in others
               - {"PYTHON_ENABLE_OPENTELEMETRY"})  # tests/infra/test_telemetry_infra.py


def test_azure_needs_no_python_init_indexing_setting() -> None:
    """PYTHON_ENABLE_INIT_INDEXING (set in local.settings.sample.json) only moves function indexing from the
    metadata request to the worker's init request, and gates HTTP streaming (azurefunctions-extensions-http-*);
    the SDK-type blob bindings are loaded either way (azure-functions-python-worker, dispatcher.py and
    bindings/meta.py). valet uses no HTTP streaming, so Azure gets no such setting."""
    requirements = (INFRA.parent / "requirements.txt").read_text()
    assert "azurefunctions-extensions-bindings-blob" in requirements
    assert "azurefunctions-extensions-http" not in requirements
    assert "PYTHON_ENABLE_INIT_INDEXING" not in app_settings()

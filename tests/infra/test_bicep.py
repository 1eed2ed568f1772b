"""The security-relevant facts of infra/*.bicep, read from the templates as pycep parses them.

No Bicep compiler or Azure subscription is available here, so these tests pin what can be read from the
source: identity, access, role assignments and scopes, CORS, Event Grid wiring. They do not prove that
Azure accepts the templates (docs/deployment.md, "Checked, not yet deployed").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from tests.infra.bicep import INFRA, ROOT, Template, for_expressions, parse, role_assignments, runtime_references
from valet import cors
from valet.validation.malware import EVENT_TYPE as MALWARE_EVENT_TYPE

TEMPLATES = ("main.bicep", "resources.bicep", "malware.bicep", "eventgrid.bicep")

# Built-in role definition ids (the same in every tenant).
DELEGATOR = "db58b8e5-c6ad-4a2a-8342-4190687cbf4a"
BLOB_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
BLOB_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
BLOB_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
QUEUE_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
KV_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
QUEUE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"  # Storage Queue Data Message Sender: add messages only
METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
TABLE_CONTRIBUTOR = "0a6a572e-d87b-40b0-9f2b-2dde5f6d6c46"  # Storage Table Data Contributor: entities only
TAGS_ROLE = "blobTagsRole"
AUDIT_ROLE = "auditAppendRole"
APP = "identity.properties.principalId"

# (scope, role) for the app's identity: exactly these, nothing broader (docs/deployment.md, "Role assignments").
EXPECTED_APP_ROLES = {
    ("uploadsAccount", DELEGATOR),
    ("uploadsContainer", BLOB_CONTRIBUTOR),
    ("uploadsContainer", TAGS_ROLE),
    ("acceptedContainer", BLOB_CONTRIBUTOR),
    ("acceptedContainer", TAGS_ROLE),
    ("quarantineContainer", BLOB_CONTRIBUTOR),
    ("quarantineContainer", TAGS_ROLE),
    ("apiKeysContainer", BLOB_READER),
    ("auditContainer", AUDIT_ROLE),
    ("poisonQueue", QUEUE_CONTRIBUTOR),
    ("decisionQueue", QUEUE_SENDER),
    ("quotaTable", TABLE_CONTRIBUTOR),
    ("hostAccount", BLOB_OWNER),
    ("hostAccount", QUEUE_CONTRIBUTOR),
    ("grantKeysSecret", KV_SECRETS_USER),
    ("pepperSecret", KV_SECRETS_USER),
    ("appInsights", METRICS_PUBLISHER),
}


@pytest.fixture(scope="module")
def resources() -> Template:
    return Template("resources.bicep")


def test_every_template_parses() -> None:
    for name in TEMPLATES:
        assert parse(name)["resources"], name


def test_role_assignments_are_exactly_the_expected_set(resources: Template) -> None:
    found = role_assignments(resources)
    app = [r for r in found if r["principal"] == APP]
    assert sorted((r["scope"], r["role"]) for r in app) == sorted(EXPECTED_APP_ROLES)  # no duplicates either
    assert all(r["principalType"] == "ServicePrincipal" and not r["conditional"] for r in app)
    others = [r for r in found if r["principal"] != APP]
    assert [(r["scope"], r["role"], r["principal"], r["conditional"]) for r in others] == [
        ("apiKeysContainer", BLOB_CONTRIBUTOR, "keysAdminPrincipalId", True)]
    assert resources.parameters["keysAdminPrincipalId"]["default"] == ""


def test_no_role_is_assigned_above_the_resource_it_is_for(resources: Template) -> None:
    scopes = {r["scope"] for r in role_assignments(resources)}
    types = {s: resources.resources[s]["type"] for s in scopes}
    assert "resourceGroup" not in str(scopes) and None not in scopes
    # The only account-wide data roles: the delegator (Get User Delegation Key is an account operation) and
    # the host's roles on its own account, which holds no upload.
    account_wide = sorted((r["scope"], r["role"]) for r in role_assignments(resources)
                          if types[r["scope"]] == "Microsoft.Storage/storageAccounts")
    assert account_wide == sorted([("hostAccount", BLOB_OWNER), ("hostAccount", QUEUE_CONTRIBUTOR),
                                   ("uploadsAccount", DELEGATOR)])
    assert types["uploadsContainer"] == "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert types["poisonQueue"] == "Microsoft.Storage/storageAccounts/queueServices/queues"
    assert types["quotaTable"] == "Microsoft.Storage/storageAccounts/tableServices/tables"
    assert types["grantKeysSecret"] == types["pepperSecret"] == "Microsoft.KeyVault/vaults/secrets"


def test_containers_are_the_apps_and_live_in_the_uploads_account(resources: Template) -> None:
    containers = resources.of_type("Microsoft.Storage/storageAccounts/blobServices/containers")
    names = {s: resources.value(c["name"]) for s, c in containers.items()}
    assert names == {"uploadsContainer": "uploads", "acceptedContainer": "accepted",
                     "quarantineContainer": "quarantine", "apiKeysContainer": "valet-apikeys",
                     "auditContainer": "audit", "deploymentContainer": "app-package"}
    for symbol in ("uploadsContainer", "acceptedContainer", "quarantineContainer", "apiKeysContainer",
                   "auditContainer"):
        assert containers[symbol]["parent"] == "uploadsBlobService"
        assert containers[symbol]["properties"]["publicAccess"] == "None"
    assert resources.resource("uploadsBlobService")["parent"] == "uploadsAccount"
    assert containers["deploymentContainer"]["parent"] == "hostBlobService"
    assert resources.resource("hostBlobService")["parent"] == "hostAccount"
    assert resources.value(resources.resource("poisonQueue")["name"]) == "webjobs-blobtrigger-poison"
    assert resources.value(resources.resource("decisionQueue")["name"]) == "valet-decisions"
    assert resources.resource("decisionQueue")["parent"] == "uploadsQueueService"


def test_the_quota_table_is_the_stores_and_lives_in_the_uploads_account(resources: Template) -> None:
    from valet.quotas.settings import DEFAULT_TABLE, table_url_for

    tables = resources.of_type("Microsoft.Storage/storageAccounts/tableServices/tables")
    assert {s: resources.value(t["name"]) for s, t in tables.items()} == {"quotaTable": DEFAULT_TABLE}
    assert tables["quotaTable"]["parent"] == "uploadsTableService"
    assert resources.resource("uploadsTableService")["parent"] == "uploadsAccount"
    # the Table endpoint the app derives from the blob endpoint is the uploads account's
    assert table_url_for("https://stvaletx.blob.core.windows.net") == "https://stvaletx.table.core.windows.net"
    table_roles = [r for r in role_assignments(resources) if r["role"] == TABLE_CONTRIBUTOR]
    assert [(r["scope"], r["principal"]) for r in table_roles] == [("quotaTable", APP)]


def test_custom_tag_role_grants_only_blob_index_tags(resources: Template) -> None:
    role = resources.resource(TAGS_ROLE)["properties"]
    [permissions] = role["permissions"]
    assert permissions["actions"] == [] and permissions["notActions"] == []
    assert sorted(permissions["dataActions"]) == [
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/filter/action",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/read",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/write",
    ]
    assert role["type"] == "CustomRole"
    [scope] = role["assignableScopes"]  # resourceGroup().id: assignable in this resource group only
    operands = scope["operator"]["operands"]
    assert operands["operand_1"]["function"]["type"] == "resource_group" and operands["operand_2"] == "id"
    assert operands["operand_1"]["function"]["parameters"] == {"resource_group_name": None, "subscription_id": None}


def test_audit_container_keeps_records_unchangeable_but_appendable(resources: Template) -> None:
    [(symbol, policy)] = resources.of_type(
        "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies").items()
    assert policy["parent"] == "auditContainer" and resources.value(policy["name"]) == "default"
    props = policy["properties"]
    assert props["allowProtectedAppendWrites"] is True  # Append Block on append blobs only
    assert "allowProtectedAppendWritesAll" not in props  # that one would also allow block-blob Put Block
    assert props["immutabilityPeriodSinceCreationInDays"] == "auditRetentionDays"
    days = resources.parameters["auditRetentionDays"]
    assert days["default"] == 90
    entry = parse("main.bicep")
    assert entry["parameters"]["auditRetentionDays"]["default"] == 90
    assert "auditRetentionDays" in json.loads((INFRA / "main.parameters.json").read_text())["parameters"]


def test_the_app_cannot_delete_in_the_audit_container(resources: Template) -> None:
    role = resources.resource(AUDIT_ROLE)["properties"]
    [permissions] = role["permissions"]
    assert permissions["actions"] == [] and permissions["notActions"] == []
    assert sorted(permissions["dataActions"]) == [
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
    ]
    assert not any("delete" in a.lower() or "immutablestorage" in a.lower() for a in permissions["dataActions"])
    on_audit = [r for r in role_assignments(resources) if r["scope"] == "auditContainer"]
    assert [(r["role"], r["principal"]) for r in on_audit] == [(AUDIT_ROLE, APP)]  # and no one else
    scope = role["assignableScopes"][0]["operator"]["operands"]["operand_1"]["function"]["type"]
    assert scope == "resource_group"


@pytest.mark.parametrize("account", ["uploadsAccount", "hostAccount"])
def test_storage_accounts_take_no_shared_keys_and_no_anonymous_reads(resources: Template, account: str) -> None:
    props = resources.resource(account)["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["defaultToOAuthAuthentication"] is True
    assert props["allowCrossTenantReplication"] is False


def test_storage_account_names_fit_azure_rules(resources: Template) -> None:
    for symbol, prefix in (("uploadsAccount", "stvalet"), ("hostAccount", "stfunc")):
        name = resources.resource(symbol)["name"]
        assert name == prefix + "${token}"
        assert len(prefix) + 13 <= 24 and prefix.islower()  # uniqueString() gives 13 characters
    token = resources.variables["token"]["value"]["function"]
    assert token["type"] == "to_lower" and token["parameters"]["string_to_change"]["function"]["type"] == "unique_string"


def test_function_app_is_flex_consumption_python_311_https_only(resources: Template) -> None:
    plan = resources.resource("plan")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    site = resources.resource("functionApp")
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["serverFarmId"] == {"operator": {"type": "property_accessor",
                                                  "operands": {"operand_1": "plan", "operand_2": "id"}}}
    assert props["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    deployment = props["functionAppConfig"]["deployment"]["storage"]
    assert deployment["authentication"]["type"] == "UserAssignedIdentity"
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    assert "ftpsState" not in props["siteConfig"]  # Flex Consumption has no FTP(S); see test_flex.py
    assert site["identity"]["type"] == "UserAssigned"
    assert resources.value(site["tags"]["function"]["parameters"]["arg_2"]) == {"azd-service-name": "api"}


def test_secrets_live_in_an_rbac_key_vault_with_purge_protection(resources: Template) -> None:
    vault = resources.resource("vault")["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enablePurgeProtection"] is True and vault["enableSoftDelete"] is True
    assert resources.resource("grantKeysSecret")["properties"]["value"] == "grantSigningKeys"
    assert resources.resource("pepperSecret")["properties"]["value"] == "apiKeyPepper"
    for template in ("main.bicep", "resources.bicep"):
        params = parse(template)["parameters"]
        for secret in ("grantSigningKeys", "apiKeyPepper"):
            assert {"type": "secure"} in params[secret]["decorators"]
            assert params[secret].get("default") is None


def test_application_insights_takes_entra_id_telemetry_only(resources: Template) -> None:
    assert resources.resource("appInsights")["properties"]["DisableLocalAuth"] is True


def test_storage_cors_matches_the_emulator_rule_and_is_off_by_default(resources: Template) -> None:
    assert resources.parameters["corsOrigins"]["default"] == []
    assert parse("main.bicep")["parameters"]["corsOrigins"]["default"] == ""
    assert resources.var("corsRules") == []
    origins = ["https://app.example.com", "http://localhost:5173"]
    [rule] = Template("resources.bicep", params={"corsOrigins": origins}).var("corsRules")
    assert {"corsRules": [rule]} == cors.arm_cors_rules(tuple(origins))
    cors_config = resources.resource("uploadsBlobService")["properties"]["cors"]
    assert cors_config == {"corsRules": "corsRules"}
    # The API's CORS is valet's own (VALET_CORS_ORIGINS); platform CORS would answer in its place.
    assert "cors" not in resources.resource("functionApp")["properties"]["siteConfig"]


def test_no_template_allows_every_origin() -> None:
    def origin_lists(node: Any) -> list[Any]:
        if isinstance(node, dict):
            found = [v for k, v in node.items() if k in ("allowedOrigins",)]
            return found + [x for v in node.values() for x in origin_lists(v)]
        if isinstance(node, list):
            return [x for v in node for x in origin_lists(v)]
        return []

    for name in TEMPLATES:
        for origins in origin_lists(parse(name)):
            assert origins == "corsOrigins", f"{name}: allowedOrigins must come from the corsOrigins parameter"
        assert not re.search(r"allowedOrigins:\s*\[\s*'\*'", (INFRA / name).read_text())


def test_blob_created_events_reach_the_blob_trigger(resources: Template) -> None:
    topic = resources.resource("uploadsTopic")["properties"]
    assert topic["topicType"] == "Microsoft.Storage.StorageAccounts"
    assert topic["source"] == {"operator": {"type": "property_accessor",
                                            "operands": {"operand_1": "uploadsAccount", "operand_2": "id"}}}
    events = Template("eventgrid.bicep")
    sub = events.resource("blobCreated")
    assert sub["parent"] == "uploadsTopic"
    assert events.resources["uploadsTopic"]["type"] == "Microsoft.EventGrid/systemTopics"
    destination = sub["properties"]["destination"]
    assert destination["endpointType"] == "WebHook"
    url = destination["properties"]["endpointUrl"]
    assert url.startswith("https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?")
    assert "functionName=Host.Functions.${blobTriggerFunction}&" in url
    assert url.endswith("&code=${functionHost.listKeys().systemKeys.blobs_extension}")
    assert events.var("blobTriggerFunction") == "validate_upload"
    filters = sub["properties"]["filter"]
    assert filters["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert events.value(filters["subjectBeginsWith"]) == "/blobServices/default/containers/uploads/blobs/"
    assert events.value("uploadsContainer") == resources.var("uploadsContainerName")


def test_malware_scan_results_reach_the_event_grid_function() -> None:
    malware = Template("malware.bicep")
    defender = malware.resource("defender")
    assert defender["scope"] == "uploadsAccount"
    scanning = defender["properties"]["malwareScanning"]
    assert scanning["onUpload"]["isEnabled"] is True
    assert malware._accessor(scanning["scanResultsEventGridTopicResourceId"]) == "scanResultsTopic.id"
    assert malware.resource("scanResultsTopic")["properties"]["inputSchema"] == "EventGridSchema"
    events = Template("eventgrid.bicep")
    sub = events.resource("scanResults")
    url = sub["properties"]["destination"]["properties"]["endpointUrl"]
    assert "/runtime/webhooks/EventGrid?functionName=${malwareFunction}&" in url
    assert url.endswith("&code=${functionHost.listKeys().systemKeys.eventgrid_extension}")
    assert events.var("malwareFunction") == "malware_scan_result"
    assert sub["properties"]["filter"]["includedEventTypes"] == [MALWARE_EVENT_TYPE]
    assert events.condition("scanResults") is not None  # only with malware scanning on


def test_event_grid_targets_are_the_apps_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.functions import fresh_app

    # Only the binding settings: without a storage URL the app's runtime stays unconfigured (no network).
    monkeypatch.delenv("VALET_STORAGE_ACCOUNT_URL", raising=False)
    env = {"VALET_TRIGGER_SOURCE": "EventGrid", "VALET_TRIGGER_CONNECTION": "ValetStorage",
           "VALET_UPLOADS_CONTAINER": "uploads"}
    with fresh_app(monkeypatch, env) as module:
        functions = {f.get_function_name(): [b.get_dict_repr() for b in f.get_bindings()]
                     for f in module.app.get_functions()}
    events = Template("eventgrid.bicep")
    [blob] = [b for b in functions[events.var("blobTriggerFunction")] if b["type"] == "blobTrigger"]
    assert (blob["source"], blob["connection"], blob["path"]) == ("EventGrid", "ValetStorage", "uploads/{name}")
    assert functions[events.var("malwareFunction")][0]["type"] == "eventGridTrigger"


def test_tombstone_lifecycle_rule_matches_the_validators_tags(resources: Template) -> None:
    from valet.validation import records

    [rule] = resources.resource("lifecycle")["properties"]["policy"]["rules"]
    filters = rule["definition"]["filters"]
    assert filters["blobIndexMatch"] == [{"name": records.STATE, "op": "==", "value": records.TOMBSTONE}]
    assert resources.value(filters["prefixMatch"]) == ["uploads/"]
    # Longer than the longest SAS (60 min) plus the longest grace (24 h) the settings allow.
    assert rule["definition"]["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"] * 24 * 60 > 60 + 24 * 60


def test_outputs_the_docs_and_hooks_use_exist() -> None:
    outputs = parse("main.bicep")["outputs"]
    for name in ("VALET_API_URL", "VALET_STORAGE_ACCOUNT_NAME", "AZURE_FUNCTION_APP_NAME", "AZURE_RESOURCE_GROUP",
                 "VALET_UPLOADS_TOPIC_NAME", "VALET_MALWARE_TOPIC_NAME", "VALET_UPLOADS_CONTAINER"):
        assert name in outputs
    hook = (INFRA / "hooks" / "postdeploy.sh").read_text()
    used = set(re.findall(r"\$\{?((?:AZURE|VALET)_[A-Z_]+)", hook)) - {"VALET_KEY_WAIT_TRIES", "VALET_KEY_WAIT_SECONDS"}
    assert used <= set(outputs), used - set(outputs)
    page = (ROOT / "docs" / "deployment.md").read_text()
    assert "VALET_API_URL" in page and "VALET_STORAGE_ACCOUNT_NAME" in page


def test_azd_parameters_cover_the_entry_template() -> None:
    params = parse("main.bicep")["parameters"]
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(mapped) <= set(params)
    assert {name for name, p in params.items() if p.get("default") is None} <= set(mapped)
    azure_yaml = (ROOT / "azure.yaml").read_text()
    assert "host: function" in azure_yaml and "language: python" in azure_yaml
    assert "infra/hooks/preprovision.sh" in azure_yaml and "infra/hooks/postdeploy.sh" in azure_yaml


# ---------------------------------------------------------------------------------------------------------
# Deployment-breaking rules (issue 18): what `bicep build` or Azure would refuse
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TEMPLATES)
def test_no_for_expression_reads_a_runtime_value(name: str) -> None:
    """BCP178: a `for` expression must be computable at the start of the deployment, so it may not reach a
    resource's runtime properties (`identity.properties.clientId`, a secret's `properties.secretUri`, ...),
    not even through variables."""
    doc = parse(name)
    assert {where: refs for where, loop in for_expressions(doc) if (refs := runtime_references(doc, loop))} == {}


@pytest.mark.parametrize("name", TEMPLATES)
def test_resource_names_are_deploy_time_values(name: str) -> None:
    """BCP120: the same rule for resource and module names."""
    template = Template(name)
    names = {s: template.resource(s).get("name") for s in template.resources}
    names |= {m: (b["config"].get("config", b["config"]) if "condition" in b["config"] else b["config"]).get("name")
              for m, b in template.doc.get("modules", {}).items()}
    assert {s: refs for s, n in names.items() if (refs := runtime_references(template.doc, n))} == {}


def test_the_runtime_value_check_finds_a_loop_over_runtime_settings(tmp_path: Path) -> None:
    """Proof the check can fail: the loop this repository shipped before, over variables holding runtime values."""
    bad = tmp_path / "bad.bicep"
    bad.write_text("""
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id'
  location: 'x'
}
var settings = {
  A: 'https://${identity.name}.example'
  B: identity.properties.clientId
}
var more = {
  C: 'ClientId=${identity.properties.clientId}'
}
resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: 's'
  location: 'x'
  properties: {
    siteConfig: {
      appSettings: [for s in items(union(settings, more)): { name: s.key, value: s.value }]
    }
  }
}
resource ok 'Microsoft.Storage/storageAccounts@2023-05-01' = [for i in range(0, 2): {
  name: 'st${identity.name}${i}'
  location: 'x'
}]
""")
    doc: dict[str, Any] = BicepParser(cache=False).parse(file_path=bad)  # type: ignore[assignment]
    found = {where: runtime_references(doc, loop) for where, loop in for_expressions(doc)}
    assert found == {
        "resources.site.config.properties.siteConfig.appSettings": [
            "via settings: identity.properties.clientId", "via more: identity.properties.clientId"],
        "resources.ok.config": [],
    }


def test_app_settings_are_one_appsettings_config_child(resources: Template) -> None:
    [(symbol, config)] = resources.of_type("Microsoft.Web/sites/config").items()
    assert (config["parent"], config["name"]) == ("functionApp", "appsettings")
    merged = config["properties"]["function"]
    assert merged["type"] == "union" and merged["parameters"] == {"arg_1": "valetSettings", "arg_2": "hostSettings"}
    assert "appSettings" not in resources.resource("functionApp")["properties"]["siteConfig"]


def test_custom_role_name_is_unique_per_subscription_and_resource_group(resources: Template) -> None:
    """Role display names must be unique in the tenant; one tenant can hold the same environment (the same
    resource group name) in two subscriptions."""
    name = resources.resource(TAGS_ROLE)["properties"]["roleName"]
    assert "${subscription().subscriptionId}" in name and "${resourceGroup().name}" in name
    assert len(name.replace("${subscription().subscriptionId}", "s" * 36)
               .replace("${resourceGroup().name}", "r" * 90)) <= 512  # a GUID, the longest group name; RBAC's limit
    definition = resources.resource(TAGS_ROLE)["name"]["function"]
    assert definition["type"] == "guid"  # the definition's id: resourceGroup().id, which names the subscription too


def test_defender_is_turned_on_after_the_accounts_only_system_topic(resources: Template) -> None:
    """One Event Grid system topic per account, and turning on Defender's scanning creates one when the account has
    none: the template's topic must exist first."""
    module = resources.doc["modules"]["malwareScanning"]["config"]["config"]
    assert "uploadsTopic" in module["dependsOn"]
    topics = [t["properties"]["source"] for t in resources.of_type("Microsoft.EventGrid/systemTopics").values()]
    assert [resources._accessor(s) for s in topics] == ["uploadsAccount.id"]
    for name in ("malware.bicep", "main.bicep"):
        assert not Template(name).of_type("Microsoft.EventGrid/systemTopics"), name


def test_key_vault_name_changes_with_the_vault_generation(resources: Template) -> None:
    """After `azd down` the purge-protected vault stays soft-deleted, its name reserved for the retention period:
    a new deployment must use a new name (VALET_VAULT_GENERATION, emptied by the postdown hook)."""
    vault = resources.resource("vault")
    assert vault["name"] == "kv-valet-${vaultToken}" and len("kv-valet-") + 13 <= 24
    token = resources.variables["vaultToken"]["value"]["function"]["parameters"]["string_to_change"]["function"]
    assert token["type"] == "unique_string" and "vaultGeneration" in token["parameters"].values()
    assert vault["properties"]["enablePurgeProtection"] is True
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["vaultGeneration"] == {"value": "${VALET_VAULT_GENERATION}"}
    assert parse("main.bicep")["parameters"]["vaultGeneration"].get("default") is None  # the hook always sets it


def test_function_host_keys_come_from_an_existing_resource_only(resources: Template) -> None:
    """`Microsoft.Web/sites/host` has no resource type in bicep-types-az at any API version (only its listKeys
    function), so Bicep warns BCP081. The resource is `existing` and only read through listKeys(): nothing of it
    is deployed, and the warning cannot stop `bicep build`."""
    events = parse("eventgrid.bicep")
    host = events["resources"]["functionHost"]
    assert (host["type"], host["existing"], host["api_version"]) == ("Microsoft.Web/sites/host", True, "2024-04-01")
    text = (INFRA / "eventgrid.bicep").read_text()
    uses = re.findall(r"functionHost\.(\w+)", text)
    assert uses and set(uses) == {"listKeys"}


# What the blob extension itself does with the trigger's connection (the uploads account) when the source is Event
# Grid, read in Azure/azure-sdk-for-net, sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Blobs/src:
# BlobsExtensionConfigProvider.ConvertAsync puts each event on the host's queue (AzureWebJobsStorage, the host
# account); BlobListenerFactory starts no container scan or log polling for EventGrid; BlobQueueTriggerExecutor
# reads the blob's properties (GetBlobReferenceFromServerAsync) before it runs the function; a message that failed
# every try goes to the poison queue on the trigger's account, created if missing. valet's own reads and writes
# go through its code, with the same identity, and are covered by EXPECTED_APP_ROLES.
TRIGGER_OPERATIONS = {
    ("uploadsContainer", "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"),
    ("poisonQueue", "Microsoft.Storage/storageAccounts/queueServices/queues/write"),
    ("poisonQueue", "Microsoft.Storage/storageAccounts/queueServices/queues/messages/add/action"),
}
# The built-in roles' actions and data actions (Azure built-in roles reference).
ROLE_PERMISSIONS = {
    BLOB_CONTRIBUTOR: {
        "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
        "Microsoft.Storage/storageAccounts/blobServices/containers/read",
        "Microsoft.Storage/storageAccounts/blobServices/containers/write",
        "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
    },
    QUEUE_CONTRIBUTOR: {
        "Microsoft.Storage/storageAccounts/queueServices/queues/delete",
        "Microsoft.Storage/storageAccounts/queueServices/queues/read",
        "Microsoft.Storage/storageAccounts/queueServices/queues/write",
        "Microsoft.Storage/storageAccounts/queueServices/queues/messages/delete",
        "Microsoft.Storage/storageAccounts/queueServices/queues/messages/read",
        "Microsoft.Storage/storageAccounts/queueServices/queues/messages/write",
        "Microsoft.Storage/storageAccounts/queueServices/queues/messages/add/action",
        "Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action",
    },
}


def test_the_blob_triggers_own_operations_are_covered_without_blob_data_owner(resources: Template) -> None:
    """Microsoft's identity table names Storage Blob Data Owner for a blob trigger connection as an example role;
    with the Event Grid source the extension only reads the triggering blob and writes poison messages on the
    trigger's account, which the container- and queue-scoped roles cover."""
    held = {(r["scope"], r["role"]) for r in role_assignments(resources) if r["principal"] == APP}
    for scope, action in TRIGGER_OPERATIONS:
        assert any(s == scope and action in ROLE_PERMISSIONS.get(role, set()) for s, role in held), (scope, action)
    assert not {r for s, r in held if s in ("uploadsAccount", "uploadsContainer")} & {BLOB_OWNER}
    connection = resources.var("triggerConnection")
    events = Template("eventgrid.bicep")
    assert events.var("blobTriggerFunction") == "validate_upload" and connection == "ValetStorage"

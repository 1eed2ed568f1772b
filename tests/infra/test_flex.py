"""The function app against Microsoft's list of site properties and app settings Flex Consumption deprecates.

The list is Microsoft's "Deprecated properties and settings" table for the Flex Consumption plan (the
"Flex Consumption plan deprecations" section of the Azure Functions app settings reference, which
flex-consumption-plan.md links to), copied here row by row: Microsoft says they "shouldn't be used when creating
resources for function apps in a Flex Consumption plan". (Issue 18 reports deployments refused for
`siteConfig.ftpsState`; that part is not verified here.)
"""

from __future__ import annotations

from typing import Any

from tests.infra.bicep import Template
from tests.infra.test_app_settings import app_settings

# Site properties (under properties or properties.siteConfig), with Microsoft's reason.
DEPRECATED_PROPERTIES = {
    "ftpsState": "FTPS not supported",
    "use32BitWorkerProcess": "32-bit not supported",
    "isReserved": "Not valid",
    "IsXenon": "Not valid",
    "windowsFxVersion": "Not valid",
    "alwaysOn": "Not valid",
    "preWarmedInstanceCount": "Renamed (always-ready instances)",
    "functionAppScaleLimit": "Renamed as maximumInstanceCount",
    "containerSize": "Renamed as instanceMemoryMB",
    "javaVersion": "Replaced by version in properties.functionAppConfig.runtime",
    "powerShellVersion": "Replaced by version in properties.functionAppConfig.runtime",
    "netFrameworkVersion": "Replaced by version in properties.functionAppConfig.runtime",
    "LinuxFxVersion": "Replaced by properties.functionAppConfig.runtime",
}

DEPRECATED_APP_SETTINGS = {
    "WEBSITE_NODE_DEFAULT_VERSION": "Replaced by version in properties.functionAppConfig.runtime",
    "FUNCTIONS_EXTENSION_VERSION": "App Setting will be set by the backend to the right value",
    "FUNCTIONS_WORKER_RUNTIME": "Replaced by name in properties.functionAppConfig.runtime",
    "FUNCTIONS_WORKER_RUNTIME_VERSION": "Replaced by version in properties.functionAppConfig.runtime",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY": "App Setting replaced by scale and concurrency's trigger section",
    "FUNCTIONS_WORKER_PROCESS_COUNT": "Setting not valid",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED": "Setting not valid",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING": "App Setting replaced by functionAppConfig's deployment section",
    "WEBSITE_CONTENTSHARE": "App Setting replaced by functionAppConfig's deployment section",
}


def site_property_names(site: dict[str, Any]) -> set[str]:
    props = site["properties"]
    return {k.lower() for k in props} | {k.lower() for k in props.get("siteConfig", {})}


def test_function_app_sets_no_deprecated_site_property() -> None:
    site = Template("resources.bicep").resource("functionApp")
    used = site_property_names(site) & {k.lower() for k in DEPRECATED_PROPERTIES}
    assert used == set(), {k: v for k, v in DEPRECATED_PROPERTIES.items() if k.lower() in used}


def test_function_app_sets_no_deprecated_app_setting() -> None:
    for params in ({}, {"enableMalwareScanning": True, "corsOrigins": ["https://app.example.com"]}):
        names = {k.upper() for k in app_settings(**params)}
        assert names & set(DEPRECATED_APP_SETTINGS) == set()


def test_runtime_scale_and_deployment_are_where_flex_consumption_reads_them() -> None:
    config = Template("resources.bicep").resource("functionApp")["properties"]["functionAppConfig"]
    assert set(config) == {"deployment", "runtime", "scaleAndConcurrency"}
    assert set(config["scaleAndConcurrency"]) == {"maximumInstanceCount", "instanceMemoryMB"}


def test_the_check_catches_the_property_this_template_used_to_set() -> None:
    site = {"properties": {"siteConfig": {"minTlsVersion": "1.2", "ftpsState": "Disabled"}}}
    assert site_property_names(site) & {k.lower() for k in DEPRECATED_PROPERTIES} == {"ftpsstate"}

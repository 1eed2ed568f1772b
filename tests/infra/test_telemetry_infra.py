"""The host and app settings behind OpenTelemetry on Flex Consumption (docs/telemetry.md#in-azure), pinned:
Microsoft's guidance for Python apps (host.json ``telemetryMode``, ``PYTHON_ENABLE_OPENTELEMETRY``, the
Application Insights settings) and the duplicate-telemetry trap (azure-functions-python-worker #1342)
kept shut: exactly one exporter in the worker, the app's, authenticated with the app's identity."""

from __future__ import annotations

import json

from tests.infra.bicep import INFRA, role_assignments
from tests.infra.test_app_settings import CLIENT_ID, app_settings, template
from valet.telemetry.setup import TelemetrySettings

ROOT = INFRA.parent


def test_the_host_sends_its_own_telemetry_as_opentelemetry() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"
    # Ignored in OpenTelemetry mode (Microsoft: logging.applicationInsights does not apply); kept out so
    # nobody tunes a setting that does nothing.
    assert "applicationInsights" not in host.get("logging", {})


def test_the_worker_hands_telemetry_to_the_app_and_configures_no_exporter_itself() -> None:
    settings = app_settings()
    assert settings["PYTHON_ENABLE_OPENTELEMETRY"] == "true"  # host context in; the app exports its own logs
    # The worker would call configure_azure_monitor() a second time: every record twice.
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in settings
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in settings  # Application Insights only, unless an operator adds one


def test_the_app_exports_to_application_insights_with_the_apps_identity() -> None:
    settings = app_settings()
    telemetry = TelemetrySettings.from_env(settings)
    assert telemetry.connection_string is not None and telemetry.otlp_endpoint is None
    assert (telemetry.entra, telemetry.client_id) == (True, CLIENT_ID)  # the user-assigned identity, as the host
    component = template().resource("appInsights")
    assert component["properties"]["DisableLocalAuth"] is True  # no instrumentation-key ingestion at all
    t = template()
    publishers = [r for r in role_assignments(t) if r["role"] == t.var("roles")["monitoringMetricsPublisher"]]
    assert [(r["principal"], r["conditional"]) for r in publishers] == [("identity.properties.principalId", False)]


def test_the_worker_runs_python_3_11_where_the_opentelemetry_setting_is_safe() -> None:
    # PYTHON_ENABLE_OPENTELEMETRY crashes async invocations on the 3.13 worker (azure-functions-python-worker
    # #1881); valet's functions are synchronous and run on 3.11.
    runtime = template().resource("functionApp")["properties"]["functionAppConfig"]["runtime"]
    assert (runtime["name"], runtime["version"]) == ("python", "3.11")


def test_the_deployment_installs_the_telemetry_packages() -> None:
    requirements = (ROOT / "requirements.txt").read_text().lower()
    for package in ("opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http",
                    "azure-monitor-opentelemetry"):
        assert f"\n{package}>=" in requirements, package

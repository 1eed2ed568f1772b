"""The app's functions and bindings, as the Functions host indexes them."""

from __future__ import annotations

import importlib
import sys

import pytest

from valet.errors import ConfigurationError
from valet.settings import TriggerSettings


def bindings_of(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, list[dict[str, object]]]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("function_app", None)
    module = importlib.import_module("function_app")
    return {f.get_function_name(): [b.get_dict_repr() for b in f.get_bindings()] for f in module.app.get_functions()}


def test_every_function_and_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    functions = bindings_of(monkeypatch, VALET_TRIGGER_SOURCE="EventGrid", VALET_UPLOADS_CONTAINER="incoming",
                            VALET_TRIGGER_CONNECTION="Uploads")
    assert set(functions) == {"create_upload", "upload_status", "renew_upload", "upload_download", "upload_blocks",
                              "list_profiles", "quota", "batch_status", "upload_page", "health", "openapi",
                              "validate_upload", "malware_scan_result", "sweep_tombstones", "reconcile_uploads",
                              "review_quarantine", "review_record", "review_release", "review_purge",
                              "review_audit"}
    [renew] = [b for b in functions["renew_upload"] if b["type"] == "httpTrigger"]
    assert renew["route"] == "uploads/{uploadId}/renew" and [str(m.value) for m in renew["methods"]] == ["POST", "OPTIONS"]
    [blob] = [b for b in functions["validate_upload"] if b["type"] == "blobTrigger"]
    assert (blob["path"], blob["source"], blob["connection"]) == ("incoming/{name}", "EventGrid", "Uploads")
    [route] = [b for b in functions["upload_status"] if b["type"] == "httpTrigger"]
    assert route["route"] == "uploads/{uploadId}" and [str(m.value) for m in route["methods"]] == ["GET", "DELETE", "OPTIONS"]
    [download] = [b for b in functions["upload_download"] if b["type"] == "httpTrigger"]
    assert download["route"] == "uploads/{uploadId}/download"
    assert [str(m.value) for m in download["methods"]] == ["GET", "OPTIONS"]
    [blocks] = [b for b in functions["upload_blocks"] if b["type"] == "httpTrigger"]
    assert blocks["route"] == "uploads/{uploadId}/blocks" and [str(m.value) for m in blocks["methods"]] == ["GET", "OPTIONS"]
    [grant] = [b for b in functions["create_upload"] if b["type"] == "httpTrigger"]
    assert grant["route"] == "uploads" and [str(m.value) for m in grant["methods"]] == ["POST", "OPTIONS"]
    [profiles] = [b for b in functions["list_profiles"] if b["type"] == "httpTrigger"]
    assert profiles["route"] == "profiles" and [str(m.value) for m in profiles["methods"]] == ["GET", "OPTIONS"]
    [quota] = [b for b in functions["quota"] if b["type"] == "httpTrigger"]
    assert quota["route"] == "quota" and [str(m.value) for m in quota["methods"]] == ["GET", "OPTIONS"]
    [page] = [b for b in functions["upload_page"] if b["type"] == "httpTrigger"]
    assert page["route"] == "ui/{asset?}" and [str(m.value) for m in page["methods"]] == ["GET"]
    review = {name: next(b for b in functions[name] if b["type"] == "httpTrigger")
              for name in ("review_quarantine", "review_record", "review_release", "review_purge", "review_audit")}
    assert {name: (b["route"], [str(m.value) for m in b["methods"]]) for name, b in review.items()} == {
        "review_quarantine": ("review/quarantine", ["GET"]),
        "review_record": ("review/quarantine/{uploadId}", ["GET"]),
        "review_release": ("review/quarantine/{uploadId}/release", ["POST"]),
        "review_purge": ("review/quarantine/{uploadId}/purge", ["POST"]),
        "review_audit": ("review/audit", ["GET"]),
    }  # no OPTIONS: the review routes have no CORS
    assert functions["malware_scan_result"][0]["type"] == "eventGridTrigger"
    assert functions["sweep_tombstones"][0]["schedule"] == "0 */5 * * * *"
    assert functions["reconcile_uploads"][0]["schedule"] == "30 */5 * * * *"


def test_polling_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VALET_TRIGGER_SOURCE", raising=False)
    [blob] = [b for b in bindings_of(monkeypatch)["validate_upload"] if b["type"] == "blobTrigger"]
    assert blob["source"] == "LogsAndContainerScan"


@pytest.mark.parametrize(("name", "value"), [("VALET_TRIGGER_SOURCE", "Queue"),
                                             ("VALET_TRIGGER_CONNECTION", "bad name"),
                                             ("VALET_TOMBSTONE_SWEEP_SCHEDULE", "*/5 * * * *"),
                                             ("VALET_RECONCILE_SCHEDULE", "0 */5 * * *")])
def test_invalid_trigger_settings_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        TriggerSettings.from_env({name: value})

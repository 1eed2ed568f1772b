from __future__ import annotations

import json

import pytest

from valet.errors import BadRequest, ConfigurationError, PayloadTooLarge, UnsupportedMediaType
from valet.grants.policy import Policy, normalize_content_type

DOC = {
    "default": "images",
    "profiles": {
        "images": {"maxBytes": 1000, "types": {"image/png": ["png"], "image/jpeg": ["jpg", "jpeg"]}},
        "notes": {"maxBytes": 10, "types": {"text/plain": ["txt"]}, "allowEmpty": True, "requireSha256": True},
    },
}


def policy() -> Policy:
    return Policy.from_document(DOC, setting="TEST")


def test_default_profile_is_used_when_none_is_named() -> None:
    assert policy().profile(None).name == "images"


def test_unknown_profile_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as info:
        policy().profile("videos")
    assert info.value.code == "unknown_profile"


def test_declared_size_over_the_profile_maximum_is_413() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        policy().profile("images").check("image/png", 1001, None)
    assert info.value.code == "size_exceeds_profile" and info.value.status == 413


def test_disallowed_type_is_415() -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        policy().profile("images").check("text/html", 10, None)
    assert info.value.status == 415 and "image/png" in info.value.detail


def test_empty_files_need_the_profile_to_allow_them() -> None:
    with pytest.raises(BadRequest):
        policy().profile("images").check("image/png", 0, None)
    policy().profile("notes").check("text/plain", 0, "0" * 64)


def test_required_sha256() -> None:
    with pytest.raises(BadRequest) as info:
        policy().profile("notes").check("text/plain", 1, None)
    assert info.value.code == "sha256_required"


def test_canonical_extension_is_the_first_listed() -> None:
    assert policy().profile("images").extension_for("image/jpeg") == "jpg"


def test_builtin_profiles_load() -> None:
    builtin = Policy.builtin()
    assert builtin.default in builtin.profiles


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"profiles": {}},
        {"profiles": {"Bad Name": {"maxBytes": 1, "types": {"image/png": ["png"]}}}},
        {"profiles": {"a": {"maxBytes": 0, "types": {"image/png": ["png"]}}}},
        {"profiles": {"a": {"maxBytes": True, "types": {"image/png": ["png"]}}}},
        {"profiles": {"a": {"maxBytes": 1, "types": {"IMAGE/PNG": ["png"]}}}},
        {"profiles": {"a": {"maxBytes": 1, "types": {"image/png": ["../x"]}}}},
        {"profiles": {"a": {"maxBytes": 1, "types": {"image/png": []}}}},
        {"default": "b", "profiles": {"a": {"maxBytes": 1, "types": {"image/png": ["png"]}}}},
        {"profiles": {"a": {"maxBytes": 1, "types": {"image/png": ["png"]}, "archive": {"maxRatio": -1}}}},
    ],
)
def test_invalid_profile_documents_fail_at_start_up_naming_the_setting(doc: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        Policy.from_json(json.dumps(doc), setting="VALET_PROFILES")
    assert "VALET_PROFILES" in info.value.detail


@pytest.mark.parametrize(("raw", "expected"), [("image/png", "image/png"), ("Image/PNG; charset=x", "image/png")])
def test_content_type_is_normalized(raw: str, expected: str) -> None:
    assert normalize_content_type(raw) == expected


@pytest.mark.parametrize("raw", ["png", "image/", "/png", "image/png/x", "image/p\u202eng", "text/html\r\nX: y"])
def test_malformed_content_types_are_rejected(raw: str) -> None:
    with pytest.raises(BadRequest):
        normalize_content_type(raw)


def gated() -> Policy:
    doc = {"default": "images", "profiles": {
        "images": {"maxBytes": 1000, "types": {"image/png": ["png"]}},
        "big": {"maxBytes": 10**9, "types": {"application/zip": ["zip"]}, "requiredRoles": ["Uploads.Large", "Zip"]},
    }}
    return Policy.from_document(doc, setting="TEST")


def test_a_profile_with_required_roles_needs_every_one_of_them() -> None:
    from valet.errors import Forbidden

    assert gated().profile_for("big", frozenset({"Uploads.Write", "Uploads.Large", "Zip"})).name == "big"
    with pytest.raises(Forbidden) as info:
        gated().profile_for("big", frozenset({"Uploads.Write", "Uploads.Large"}))
    assert info.value.code == "insufficient_scope" and info.value.status == 403
    assert 'scope="Uploads.Large Zip"' in info.value.headers["WWW-Authenticate"]
    assert gated().profile_for(None, frozenset()).name == "images"  # no requiredRoles: open to every caller


def test_usable_lists_only_the_profiles_a_caller_may_use() -> None:
    assert [p["name"] for p in gated().usable(frozenset({"Uploads.Write"}))["profiles"]] == ["images"]
    listed = gated().usable(frozenset({"Uploads.Large", "Zip"}))
    assert listed["default"] == "images"
    assert listed["profiles"][1] == {"name": "big", "maxBytes": 10**9, "types": {"application/zip": ["zip"]},
                                     "allowEmpty": False, "requireSha256": False}
    doc = {"default": "big", "profiles": {"big": {"maxBytes": 5, "types": {"a/b": ["b"]}, "requiredRoles": ["X"]}}}
    assert Policy.from_document(doc, setting="T").usable(frozenset()) == {"default": None, "profiles": []}


def test_the_built_in_large_and_archives_profiles_require_a_role() -> None:
    builtin = Policy.builtin()
    assert builtin.profiles["large"].required_roles == {"Uploads.Large"}
    assert builtin.profiles["archives"].required_roles == {"Uploads.Archives"}
    assert builtin.profiles["images"].required_roles == builtin.profiles["documents"].required_roles == frozenset()


@pytest.mark.parametrize("roles", ["Uploads.Large", [""], ["a b"], ['a"b'], [1], ["x" * 257]])
def test_required_roles_must_be_a_list_of_names(roles: object) -> None:
    doc = {"profiles": {"p": {"maxBytes": 5, "types": {"a/b": ["b"]}, "requiredRoles": roles}}}
    with pytest.raises(ConfigurationError, match="requiredRoles"):
        Policy.from_document(doc, setting="T")


def test_allow_pdf_actions_names_outbound_actions_only() -> None:
    doc = {"profiles": {"docs": {"maxBytes": 10, "types": {"application/pdf": ["pdf"]},
                                 "allowPdfActions": ["URI", "GoToR"]}}}
    assert Policy.from_document(doc, setting="t").profiles["docs"].pdf_actions == frozenset({"/URI", "/GoToR"})
    for bad in (["Launch"], ["JavaScript"], "URI", [1], ["/URI"]):
        doc["profiles"]["docs"]["allowPdfActions"] = bad  # type: ignore[index]
        with pytest.raises(ConfigurationError, match="allowPdfActions"):
            Policy.from_document(doc, setting="t")

from __future__ import annotations

import json

import pytest

from valet.errors import BadRequest
from valet.grants.request import parse_grant_request

GOOD = {"filename": "cat.png", "contentType": "image/png", "size": 10}


def body(**kw: object) -> bytes:
    return json.dumps({**GOOD, **kw}).encode()


def test_good_request() -> None:
    r = parse_grant_request(body(sha256="AB" * 32, profile="images"))
    assert (r.filename, r.content_type, r.size, r.sha256, r.profile) == ("cat.png", "image/png", 10, "ab" * 32, "images")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "invalid_json"),
        (b"{", "invalid_json"),
        (b"[]", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b'"x"', "invalid_json"),
        (json.dumps({**GOOD, "blobName": "../x"}).encode(), "unknown_field"),
        (body(filename=""), "invalid_filename"),
        (body(filename="   "), "invalid_filename"),
        (body(filename=7), "invalid_filename"),
        (body(filename="a" * 1025), "invalid_filename"),
        (json.dumps({"contentType": "image/png", "size": 1}).encode(), "invalid_filename"),
        (body(contentType=None), "invalid_content_type"),
        (body(contentType="png"), "invalid_content_type"),
        (body(contentType="x" * 300), "invalid_content_type"),
        (body(size=-1), "invalid_size"),
        (body(size=1.5), "invalid_size"),
        (body(size="10"), "invalid_size"),
        (body(size=True), "invalid_size"),
        (body(size=None), "invalid_size"),
        (body(sha256="xyz"), "invalid_sha256"),
        (body(sha256="a" * 63), "invalid_sha256"),
        (b"[" * 8000 + b"]" * 8000, "invalid_json"),  # found by fuzzing: RecursionError was a 500
        (b'{"a":' * 3000 + b"1" + b"}" * 3000, "invalid_json"),
        (body(contentType="image/png\x00"), "invalid_content_type"),
        (body(contentType="\u3000image/png"), "invalid_content_type"),  # only space and tab are trimmed
        (body(contentType="image/png\r\nX-Injected: 1"), "invalid_content_type"),
        (body(contentType="image/\u212a"), "invalid_content_type"),  # the Kelvin sign lower-cases to "k"
        (b'{"filename": "a.png", "contentType": "image/png", "size": 1e400}', "invalid_size"),
        (body(profile=""), "unknown_profile"),
        (body(profile=["images"]), "unknown_profile"),
    ],
)
def test_malformed_requests_get_specific_errors(raw: bytes, code: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_grant_request(raw)
    assert info.value.code == code


def test_huge_size_is_parsed_and_left_to_the_profile() -> None:
    assert parse_grant_request(body(size=10**30)).size == 10**30


def test_null_optional_fields_are_the_same_as_leaving_them_out() -> None:
    r = parse_grant_request(body(sha256=None, profile=None))
    assert (r.sha256, r.profile) == (None, None)


def test_content_type_parameters_and_surrounding_blanks_are_dropped() -> None:
    assert parse_grant_request(body(contentType=" \tIMAGE/PNG ; charset=\u00e9\x01")).content_type == "image/png"

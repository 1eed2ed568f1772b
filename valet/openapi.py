"""The HTTP API's contract: ``valet/openapi.json`` (OpenAPI 3.1), kept in the repository and served as is
at ``GET /api/openapi.json``. Tests check the running app against it (``tests/functional/test_api_contract.py``)."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

FILE = "openapi.json"


@functools.cache
def document_bytes() -> bytes:
    """The document as shipped in the package (read once per process)."""
    return resources.files("valet").joinpath(FILE).read_bytes()


def document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(document_bytes())
    return doc

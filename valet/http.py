"""The one place that turns results and :class:`~valet.errors.ValetError` into HTTP responses.

Errors are ``application/problem+json`` (RFC 9457) with a stable ``code``. Anything that is not a
``ValetError`` becomes a bare ``500 internal_error``: its text, type and stack never reach the caller,
and the log line names only the exception type.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import azure.functions as func

from valet.errors import ValetError

log = logging.getLogger("valet.http")

PROBLEM_JSON = "application/problem+json"
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_response(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        mimetype="application/json",
        charset="utf-8",
        headers={**_NO_STORE, **(headers or {})},
    )


def problem_response(error: ValetError) -> func.HttpResponse:
    body: dict[str, Any] = {
        "type": f"https://valet.dev/problems/{error.code}",
        "title": error.title,
        "status": error.status,
        "code": error.code,
        "detail": error.detail,
        **error.extra,
    }
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":")),
        status_code=error.status,
        mimetype=PROBLEM_JSON,
        charset="utf-8",
        headers={**_NO_STORE, **error.headers},
    )


def answer(respond: Callable[[], func.HttpResponse]) -> func.HttpResponse:
    """``respond()``, with :class:`ValetError` mapped to problem+json and everything else to an opaque 500
    (applied once, by the route table, to every HTTP route)."""
    try:
        return respond()
    except ValetError as error:
        if error.status >= 500:
            log.warning("request failed: %s (%s)", error.code, error.status)
        return problem_response(error)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no stack to the caller
        # Type and place only: exception text can carry URLs or values we must not log.
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        log.error("unhandled %s at %s:%s", type(exc).__name__, frame.filename, frame.lineno)
        return problem_response(ValetError())

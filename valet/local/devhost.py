"""A local host for the app's own registered functions, for machines without Azure Functions Core Tools.

It reads the ``FunctionApp`` object (``app.get_functions()``), never a second copy of the handlers:

* HTTP triggers are served by a WSGI application on waitress (a maintained pure-Python WSGI server)
  under the host's route prefix (``/api``), with route
  templates such as ``uploads/{uploadId}`` and their declared methods;
* other functions are invoked through Core Tools' admin endpoint, ``POST /admin/functions/{name}`` with
  ``{"input": "..."}``, so documented Core Tools recipes work unchanged: an Event Grid trigger takes the
  event JSON as input, a blob trigger the blob path ``container/name``, a timer trigger anything. The
  body must be ``application/json`` and a request with an ``Origin`` other than the host's own is refused
  (403), so a web page the developer opens cannot drive it (a cross-site page can send a ``text/plain``
  POST without a preflight, never an ``application/json`` one, and its ``Origin`` is never the host's).

Like the platform's front end, the host records the TCP peer in ``X-Forwarded-For`` (waitress drops any
forwarding headers a client sent), which is where the app reads the client address from.

Loopback only; development only. Not a replacement for the Functions host in Azure.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func
from waitress import create_server, wasyncore  # type: ignore[import-untyped]

log = logging.getLogger("valet.local.devhost")

MAX_BODY = 64 * 1024 * 1024


@dataclass(frozen=True)
class HttpRoute:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    function: Callable[[func.HttpRequest], func.HttpResponse]


@dataclass(frozen=True)
class BlobRef:
    """What a blob trigger function reads from its ``BlobClient`` argument here: container and name."""

    container_name: str
    blob_name: str


class _Timer:
    past_due = False


def _route_pattern(prefix: str, route: str) -> re.Pattern[str]:
    """A route template as a regex: ``{name}`` and ``{name:constraint}`` match one segment, and an
    optional last ``{name?}`` may be left out along with the slash before it (``ui/{asset?}``)."""
    parts: list[str] = []
    for piece in re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\??(?::[^}]*)?\})", route.strip("/")):
        if piece.startswith("{") and piece.endswith("}"):
            name = piece[1:-1].split(":", 1)[0]
            if name.endswith("?"):
                if parts and parts[-1].endswith("/"):
                    parts[-1] = parts[-1][:-1]
                parts.append(f"(?:/(?P<{name[:-1]}>[^/]+))?")
            else:
                parts.append(f"(?P<{name}>[^/]+)")
        else:
            parts.append(re.escape(piece))
    return re.compile(f"^/{re.escape(prefix)}/{''.join(parts)}/?$")


class FunctionHost:
    def __init__(self, app: func.FunctionApp, *, host: str = "127.0.0.1", port: int = 7071,
                 route_prefix: str = "api", listener: socket.socket | None = None) -> None:
        """``listener``: a socket already bound (and listening) on loopback, served instead of binding
        ``port``; how ``valet dev --port 0`` knows its port before the app's settings are made."""
        if host not in ("127.0.0.1", "localhost", "::1") or (
                listener is not None and listener.getsockname()[0] not in ("127.0.0.1", "::1")):
            raise ValueError("the development host binds to loopback only")
        self._host = host
        self.routes: list[HttpRoute] = []
        self.others: dict[str, tuple[str, Callable[..., Any]]] = {}
        self.schedules: dict[str, str] = {}  # timer functions: name -> NCRONTAB schedule
        for fn in app.get_functions():
            trigger: Any = fn.get_trigger()
            user = fn.get_user_function()
            name = str(fn.get_function_name())
            if trigger is None:
                continue
            if trigger.get_binding_name() == "httpTrigger":
                methods = frozenset(str(getattr(m, "value", m)).upper() for m in (trigger.methods or ()))
                self.routes.append(HttpRoute(name, _route_pattern(route_prefix, str(trigger.route)),
                                             methods or frozenset({"GET", "POST"}), user))
            else:
                self.others[name] = (str(trigger.get_binding_name()), user)
                if trigger.get_binding_name() == "timerTrigger":
                    self.schedules[name] = str(trigger.schedule)
        where: dict[str, Any] = {"sockets": [listener]} if listener is not None else {"host": host, "port": port}
        self._server = create_server(self, threads=16, ident="valet-dev", clear_untrusted_proxy_headers=True,
                                     **where)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.effective_port}"

    def start(self) -> FunctionHost:
        self._thread = threading.Thread(target=self._serve, name="valet-devhost", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        # waitress's own run() loops until interrupted; this loop checks a stop flag between short polls,
        # and closes the sockets in this same thread, so no descriptor is closed under a running poll.
        server = self._server
        while not self._stopping.is_set():
            wasyncore.loop(timeout=0.2, map=server._map, count=1)
        server.task_dispatcher.shutdown()
        wasyncore.close_all(server._map)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FunctionHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def invoke(self, name: str, payload: str) -> None:
        """Run a non-HTTP function the way Core Tools' admin endpoint does."""
        kind, user = self.others[name]
        if kind == "eventGridTrigger":
            doc = json.loads(payload)
            user(func.EventGridEvent(
                id=str(doc.get("id", "")), data=doc.get("data", {}), topic=str(doc.get("topic", "")),
                subject=str(doc.get("subject", "")), event_type=str(doc.get("eventType", "")),
                event_time=datetime.now(UTC), data_version=str(doc.get("dataVersion", "")),
            ))
        elif kind == "blobTrigger":
            container, _, blob = payload.partition("/")
            user(BlobRef(container, blob))
        elif kind == "timerTrigger":
            user(_Timer())
        else:
            raise ValueError(f"cannot invoke a {kind} function here")

    # -- WSGI ----------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """The WSGI application: HTTP functions under the route prefix, and the admin endpoint."""
        status, headers, body = self._dispatch(environ)
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Status"
        start_response(f"{status} {reason}", [*headers.items(), ("Content-Length", str(len(body)))])
        return [body]

    def _dispatch(self, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        method = str(environ["REQUEST_METHOD"]).upper()
        path = str(environ.get("PATH_INFO") or "/")
        query = str(environ.get("QUERY_STRING") or "")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _problem(400, "bad_request", "Invalid Content-Length.")
        if length > MAX_BODY:
            return _problem(413, "request_too_large", "Request body too large.")
        body = environ["wsgi.input"].read(length) if length else b""
        admin = re.fullmatch(r"/admin/functions/([A-Za-z0-9_-]+)", path)
        if admin and method == "POST":
            refused = self._admin_refusal(environ)
            return refused if refused is not None else self._admin(admin.group(1), body)
        headers = {key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items()
                   if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = str(environ["CONTENT_TYPE"])
        if environ.get("REMOTE_ADDR"):
            headers["x-forwarded-for"] = str(environ["REMOTE_ADDR"])
        allowed: set[str] = set()
        for route in self.routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if method not in route.methods:
                allowed |= route.methods
                continue
            request = func.HttpRequest(
                method=method,
                url=f"{self.url}{path}" + (f"?{query}" if query else ""),
                headers=headers,
                params=dict(parse_qsl(query)),
                route_params={k: v for k, v in match.groupdict().items() if v is not None},
                body=body,
            )
            response = route.function(request)
            out = dict(response.headers)
            if response.mimetype:
                charset = f"; charset={response.charset}" if response.charset else ""
                out.setdefault("Content-Type", f"{response.mimetype}{charset}")
            return response.status_code, out, response.get_body() or b""
        if allowed:  # RFC 9110: a 405 lists the methods the path serves
            status, out, problem = _problem(405, "method_not_allowed", "Method not allowed.")
            return status, {**out, "Allow": ", ".join(sorted(allowed))}, problem
        return _problem(404, "not_found", "No function serves this path.")

    @property
    def origins(self) -> frozenset[str]:
        """The host's own origins (its loopback names on its port): the only ``Origin`` the admin accepts."""
        port = self._server.effective_port
        return frozenset(f"http://{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]"))

    def _admin_refusal(self, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes] | None:
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and str(origin).lower() not in self.origins:
            log.warning("admin request refused: foreign origin")
            return _problem(403, "origin_not_allowed", "The admin endpoint does not answer other origins.")
        media_type = str(environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            return _problem(415, "unsupported_request_type", 'Send {"input": "..."} as application/json.')
        return None

    def _admin(self, name: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if name not in self.others:
            return _problem(404, "not_found", "No such non-HTTP function.")
        try:
            doc = json.loads(body or b"{}")
            payload = doc.get("input", "") if isinstance(doc, dict) else ""
            self.invoke(name, payload if isinstance(payload, str) else json.dumps(payload))
        except (ValueError, TypeError):
            return _problem(400, "bad_request", 'Send {"input": "..."} as JSON.')
        except Exception as exc:  # noqa: BLE001 - report like the host does, without internals
            log.warning("function %s failed: %s", name, type(exc).__name__)
            return _problem(500, "function_failed", "The function failed; see the log.")
        return 202, {}, b""


def _problem(status: int, code: str, detail: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"type": f"https://valet.dev/problems/{code}", "title": detail, "status": status,
                       "code": code, "detail": detail}).encode()
    return status, {"Content-Type": "application/problem+json"}, body

"""A local host for the app's own registered functions, for machines without Azure Functions Core Tools.

It reads the ``FunctionApp`` object (``app.get_functions()``), never a second copy of the handlers:

* HTTP triggers are served on a real HTTP server under the host's route prefix (``/api``), with route
  templates such as ``uploads/{uploadId}`` and their declared methods;
* other functions are invoked through Core Tools' admin endpoint, ``POST /admin/functions/{name}`` with
  ``{"input": "..."}``, so documented Core Tools recipes work unchanged: an Event Grid trigger takes the
  event JSON as input, a blob trigger the blob path ``container/name``, a timer trigger anything.

Loopback only; development only. Not a replacement for the Functions host in Azure.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

log = logging.getLogger("valet.devhost")

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
    parts = []
    for piece in re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*(?::[^}]*)?\})", route.strip("/")):
        if piece.startswith("{") and piece.endswith("}"):
            name = piece[1:-1].split(":", 1)[0]
            parts.append(f"(?P<{name}>[^/]+)")
        else:
            parts.append(re.escape(piece))
    return re.compile(f"^/{re.escape(prefix)}/{''.join(parts)}/?$")


class FunctionHost:
    def __init__(self, app: func.FunctionApp, *, host: str = "127.0.0.1", port: int = 7071,
                 route_prefix: str = "api") -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
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
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_address[1]}"

    def start(self) -> FunctionHost:
        self._thread = threading.Thread(target=self._server.serve_forever, name="valet-devhost", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

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

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _problem(self, status: int, code: str, detail: str) -> None:
                body = json.dumps({"type": f"https://valet.dev/problems/{code}", "title": detail,
                                   "status": status, "code": code, "detail": detail}).encode()
                self._send(status, body, {"Content-Type": "application/problem+json"})

            def _dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._problem(413, "request_too_large", "Request body too large.")
                    return
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path)
                admin = re.fullmatch(r"/admin/functions/([A-Za-z0-9_-]+)", path.path)
                if admin and self.command == "POST":
                    self._admin(admin.group(1), body)
                    return
                allowed: set[str] = set()
                for route in host.routes:
                    match = route.pattern.match(path.path)
                    if match is None:
                        continue
                    if self.command not in route.methods:
                        allowed |= route.methods
                        continue
                    request = func.HttpRequest(
                        method=self.command,
                        url=f"{host.url}{self.path}",
                        headers={k.lower(): v for k, v in self.headers.items()},
                        params=dict(parse_qsl(path.query)),
                        route_params=match.groupdict(),
                        body=body,
                    )
                    response = route.function(request)
                    headers = dict(response.headers)
                    if response.mimetype:
                        charset = f"; charset={response.charset}" if response.charset else ""
                        headers.setdefault("Content-Type", f"{response.mimetype}{charset}")
                    self._send(response.status_code, response.get_body() or b"", headers)
                    return
                if allowed:
                    self._problem(405, "method_not_allowed", "Method not allowed.")
                else:
                    self._problem(404, "not_found", "No function serves this path.")

            def _admin(self, name: str, body: bytes) -> None:
                if name not in host.others:
                    self._problem(404, "not_found", "No such non-HTTP function.")
                    return
                try:
                    doc = json.loads(body or b"{}")
                    payload = doc.get("input", "") if isinstance(doc, dict) else ""
                    host.invoke(name, payload if isinstance(payload, str) else json.dumps(payload))
                except (ValueError, TypeError):
                    self._problem(400, "bad_request", "Send {\"input\": \"...\"} as JSON.")
                    return
                except Exception as exc:  # noqa: BLE001 - report like the host does, without internals
                    log.warning("function %s failed: %s", name, type(exc).__name__)
                    self._problem(500, "function_failed", "The function failed; see the log.")
                    return
                self._send(202, b"", {})

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

        return Handler

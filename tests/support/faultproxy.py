"""A fault-injecting HTTP(S) proxy for tests: sits between a client and one upstream, on loopback only.

The proxy parses each HTTP/1.1 request, so it can count requests and fail chosen ones, and forwards the
rest to the upstream over its own connection. For an ``https`` upstream it terminates TLS with a
self-signed certificate of its own (clients trust :attr:`FaultProxy.ca_bundle`) and speaks HTTPS to the
upstream again, verifying it with ``upstream_ca``; that is what lets it answer a plain ``503`` to an SDK
that refuses bearer tokens over plain HTTP.

Faults (:class:`Fault`): an HTTP status (``503`` with ``Retry-After``, ``500``), a connection reset after
the request was read, a delay before forwarding, and a "lost response" (forwarded, then the connection is
reset: the upstream did the work, the client never hears). A :class:`Rule` says which requests get the
fault: the first ``skip`` matching requests pass, the next ``times`` (or all) get it, the rest pass, so
"fail the next N requests then recover" and "fail after N requests" are one rule each. :meth:`down`
refuses connections (the port stays reserved, so :meth:`up` gets it back).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from urllib.parse import urlsplit

from valet.local.emulator import make_certificate

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                         "upgrade"})
_MAX_LINE = 65536


@dataclass(frozen=True)
class Request:
    """What a rule's ``match`` sees of a request."""

    method: str
    path: str
    headers: Message


@dataclass(frozen=True)
class Fault:
    kind: str  # status | reset | delay | lost_response
    status: int = 503
    retry_after: int | None = None
    error_code: str = "ServerBusy"
    seconds: float = 0.0

    @classmethod
    def unavailable(cls, retry_after: int = 1) -> Fault:
        """``503 ServerBusy`` with ``Retry-After``, as storage answers when it throttles."""
        return cls("status", 503, retry_after, "ServerBusy")

    @classmethod
    def internal_error(cls) -> Fault:
        return cls("status", 500, None, "InternalError")

    @classmethod
    def reset(cls) -> Fault:
        """The request is read, then the connection is reset (TCP RST) without an answer."""
        return cls("reset")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before forwarding (the upstream still gets the request afterwards)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def lost_response(cls) -> Fault:
        """Forward the request, then reset the connection instead of returning the upstream's answer."""
        return cls("lost_response")


@dataclass(frozen=True)
class Rule:
    fault: Fault
    skip: int = 0
    times: int | None = None  # None: every matching request after the skipped ones
    match: Callable[[Request], bool] | None = None


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    fault: str | None  # the fault kind applied, None when passed through


@dataclass
class _RuleState:
    rule: Rule
    matched: int = 0
    faulted: int = 0


@dataclass
class FaultProxy:
    """``FaultProxy(upstream_url, workdir=..., upstream_ca=...)``; use as a context manager."""

    upstream: str
    workdir: Path | None = None
    upstream_ca: str | None = None
    upstream_timeout: float = 30.0
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _state: _RuleState | None = None
    _listener: socket.socket | None = None
    _reserved: socket.socket | None = None
    _port: int = 0
    _clients: set[socket.socket] = field(default_factory=set)
    _threads: list[threading.Thread] = field(default_factory=list)
    _server_tls: ssl.SSLContext | None = None
    _upstream_tls: ssl.SSLContext | None = None
    _cert: Path | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.hostname not in ("127.0.0.1", "localhost") or parts.scheme not in ("http", "https"):
            raise ValueError("the fault proxy only fronts a loopback http(s) upstream")
        self._scheme, self._host = parts.scheme, parts.hostname
        self._upstream_port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        if self._scheme == "https":
            if self.workdir is None:
                raise ValueError("an https upstream needs a workdir for the proxy's certificate")
            self._cert, key = make_certificate(self.workdir / "faultproxy-tls")
            self._server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._server_tls.load_cert_chain(self._cert, key)
            self._upstream_tls = ssl.create_default_context(cafile=self.upstream_ca)

    # -- what tests use ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The upstream URL with the proxy's host and port (same path prefix)."""
        return f"{self._scheme}://127.0.0.1:{self._port}{self._prefix}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def ca_bundle(self) -> str | None:
        """The certificate a client must trust to talk to the proxy (``None`` for plain HTTP)."""
        return str(self._cert) if self._cert else None

    @property
    def requests(self) -> int:
        """Requests the proxy read (passed and faulted)."""
        with self._lock:
            return len(self.seen)

    @property
    def faulted(self) -> int:
        with self._lock:
            return sum(1 for s in self.seen if s.fault is not None)

    def inject(self, fault: Fault, *, skip: int = 0, times: int | None = None,
               match: Callable[[Request], bool] | None = None) -> None:
        """Replace the current rule (see :class:`Rule`)."""
        with self._lock:
            self._state = _RuleState(Rule(fault, skip, times, match))

    def heal(self) -> None:
        """Pass everything through again (and accept connections, if :meth:`down`)."""
        with self._lock:
            self._state = None
        self.up()

    def down(self) -> None:
        """Refuse new connections (``ECONNREFUSED``) and drop the open ones, as a stopped service does."""
        with self._lock:
            if self._listener is None:
                return
            self._reserved = _socket()
            self._reserved.bind(("127.0.0.1", self._port))  # hold the port without listening: refused
            listener, self._listener = self._listener, None
            clients = list(self._clients)
        # shutdown() stops the listening at once, even while the accept thread still polls the socket
        # (a bare close() would leave it listening until that poll returns).
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for client in clients:
            with suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)

    def up(self) -> None:
        with self._lock:
            if self._listener is not None or self._reserved is None:
                return
            listener = _socket()
            listener.bind(("127.0.0.1", self._port))
            listener.listen(64)
            listener.settimeout(0.05)
            self._listener = listener
            self._reserved.close()
            self._reserved = None

    def start(self) -> FaultProxy:
        listener = _socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener, self._port = listener, listener.getsockname()[1]
        self._spawn(self._accept_loop, "faultproxy-accept")
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            listener, self._listener = self._listener, None
            reserved, self._reserved = self._reserved, None
            clients = list(self._clients)
        for sock in (listener, reserved):
            if sock is not None:
                sock.close()
        for client in clients:
            with suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._stop.wait(0.05)
                continue
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.connections += 1
                self._clients.add(conn)
            self._spawn(self._serve, "faultproxy-conn", conn)

    def _serve(self, raw: socket.socket) -> None:
        conn = raw
        try:
            raw.settimeout(30)
            if self._server_tls is not None:
                conn = self._server_tls.wrap_socket(raw, server_side=True)  # takes over raw's descriptor
                with self._lock:
                    self._clients.discard(raw)
                    self._clients.add(conn)
            rfile = conn.makefile("rb")
            while not self._stop.is_set():
                parsed = _read_request(rfile)
                if parsed is None:
                    return
                request, body = parsed
                fault = self._decide(request)
                if fault is not None and fault.kind == "reset":
                    _reset(conn)
                    return
                if fault is not None and fault.kind == "status":
                    conn.sendall(_status_response(fault, request.method))
                    continue
                if fault is not None and fault.kind == "delay" and self._stop.wait(fault.seconds):
                    return
                response = self._forward(request, body)
                if fault is not None and fault.kind == "lost_response":
                    _reset(conn)
                    return
                conn.sendall(response)
                if (request.headers.get("connection") or "").lower() == "close":
                    return
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError):
            return
        finally:
            with suppress(OSError):
                conn.close()
            with self._lock:
                self._clients.discard(raw)
                self._clients.discard(conn)

    def _decide(self, request: Request) -> Fault | None:
        with self._lock:
            fault: Fault | None = None
            state = self._state
            if state is not None and (state.rule.match is None or state.rule.match(request)):
                state.matched += 1
                rule = state.rule
                if state.matched > rule.skip and (rule.times is None or state.faulted < rule.times):
                    state.faulted += 1
                    fault = rule.fault
            self.seen.append(Seen(request.method, request.path, fault.kind if fault else None))
            return fault

    def _forward(self, request: Request, body: bytes) -> bytes:
        """One upstream connection per request: no idle keep-alive connection the upstream may have closed
        can turn into a failure nobody injected."""
        upstream: http.client.HTTPConnection
        if self._upstream_tls is not None:
            upstream = http.client.HTTPSConnection(self._host, self._upstream_port, timeout=self.upstream_timeout,
                                                   context=self._upstream_tls)
        else:
            upstream = http.client.HTTPConnection(self._host, self._upstream_port, timeout=self.upstream_timeout)
        try:
            upstream.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
            upstream.putheader("Host", f"{self._host}:{self._upstream_port}")
            for name, value in request.headers.items():
                if name.lower() not in _HOP_BY_HOP | {"host"}:
                    upstream.putheader(name, value)
            upstream.putheader("Connection", "close")
            upstream.endheaders(body or None)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        lines = [f"HTTP/1.1 {response.status} {response.reason}"]
        for name, value in response.getheaders():
            if name.lower() in _HOP_BY_HOP or (name.lower() == "content-length" and request.method != "HEAD"):
                continue
            lines.append(f"{name}: {value}")
        if request.method != "HEAD" and response.status not in (204, 304):
            lines.append(f"Content-Length: {len(data)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _reset(conn: socket.socket) -> None:
    with suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Close the plain socket under any TLS layer: no close_notify, just the RST.
    with suppress(OSError):
        socket.socket(fileno=conn.detach()).close()


def _read_request(rfile: object) -> tuple[Request, bytes] | None:
    readline = rfile.readline  # type: ignore[attr-defined]
    line = readline(_MAX_LINE)
    while line in (b"\r\n", b"\n"):
        line = readline(_MAX_LINE)
    if not line:
        return None
    method, path, _version = line.decode("latin-1").split(" ", 2)
    headers = http.client.parse_headers(rfile)  # type: ignore[arg-type]
    if (headers.get("transfer-encoding") or "").lower() == "chunked":
        body = b"".join(_chunks(rfile))
        del headers["transfer-encoding"]
        headers["Content-Length"] = str(len(body))
    else:
        body = rfile.read(int(headers.get("content-length") or 0))  # type: ignore[attr-defined]
    return Request(method.upper(), path, headers), body


def _chunks(rfile: object) -> Iterator[bytes]:
    while True:
        size = int(rfile.readline(_MAX_LINE).split(b";", 1)[0], 16)  # type: ignore[attr-defined]
        if size == 0:
            while rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):  # type: ignore[attr-defined]
                pass
            return
        yield rfile.read(size)  # type: ignore[attr-defined]
        rfile.readline(_MAX_LINE)  # type: ignore[attr-defined]


def _status_response(fault: Fault, method: str) -> bytes:
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{fault.error_code}</Code>'
            "<Message>Injected by the test fault proxy.</Message></Error>").encode()
    reason = http.client.responses.get(fault.status, "Error")
    lines = [f"HTTP/1.1 {fault.status} {reason}", "Content-Type: application/xml",
             f"x-ms-error-code: {fault.error_code}"]
    if fault.retry_after is not None:
        lines.append(f"Retry-After: {fault.retry_after}")
    if method == "HEAD":
        body = b""
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

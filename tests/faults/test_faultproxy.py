"""The fault proxy itself, against a tiny local upstream (plain HTTP, and HTTPS for the TLS front)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.faultproxy import Fault, FaultProxy
from valet.local.emulator import make_certificate

pytestmark = pytest.mark.timeout(60)


class Upstream:
    """Answers every request with 200 and ``<method> <path> <body>``; counts what it saw."""

    def __init__(self, tls_dir: Path | None = None) -> None:
        self.hits: Counter[str] = Counter()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                upstream.hits[self.command] += 1
                data = f"{self.command} {self.path} ".encode() + body
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-upstream", "yes")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.cert: str | None = None
        if tls_dir is not None:
            cert, key = make_certificate(tls_dir)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.cert = str(cert)
        self.url = f"{'https' if tls_dir else 'http'}://127.0.0.1:{self.server.server_address[1]}/acct"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.url) as p:
        yield p


def get(proxy: FaultProxy, path: str = "/x", **kwargs: Any) -> requests.Response:
    return requests.get(f"{proxy.url}{path}", timeout=kwargs.pop("timeout", 10), **kwargs)


def test_passes_requests_through_and_counts_them(proxy: FaultProxy, upstream: Upstream) -> None:
    assert proxy.url.endswith("/acct") and f":{proxy.port}/" in proxy.url
    with requests.Session() as session:  # one keep-alive connection, several requests
        assert session.get(f"{proxy.url}/a?b=1", timeout=10).content == b"GET /acct/a?b=1 "
        put = session.put(f"{proxy.url}/p", data=b"payload", timeout=10)
        assert (put.status_code, put.content, put.headers["x-upstream"]) == (200, b"PUT /acct/p payload", "yes")
        head = session.head(f"{proxy.url}/h", timeout=10)
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(b"HEAD /acct/h "))
        chunked = session.put(f"{proxy.url}/c", data=iter([b"ab", b"cd"]), timeout=10)
        assert chunked.content == b"PUT /acct/c abcd"
    assert proxy.requests == 4 and proxy.faulted == 0 and proxy.connections == 1
    assert upstream.hits == {"GET": 1, "PUT": 2, "HEAD": 1}


def test_503_with_retry_after_for_the_next_n_requests_then_recovers(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.inject(Fault.unavailable(retry_after=7), times=2)
    answers = [get(proxy) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].headers["Retry-After"] == "7" and answers[0].headers["x-ms-error-code"] == "ServerBusy"
    assert upstream.hits["GET"] == 1 and (proxy.requests, proxy.faulted) == (3, 2)
    assert [s.fault for s in proxy.seen] == ["status", "status", None]


def test_500_after_skipping_matching_requests(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.inject(Fault.internal_error(), skip=1, times=1, match=lambda r: r.method == "PUT")
    statuses = [requests.put(f"{proxy.url}/p", data=b"1", timeout=10).status_code for _ in range(3)]
    assert statuses == [200, 500, 200] and get(proxy).status_code == 200
    assert upstream.hits == {"PUT": 2, "GET": 1}


def test_reset_and_lost_response(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.inject(Fault.reset(), times=1)
    with pytest.raises(requests.ConnectionError):
        get(proxy)
    assert upstream.hits["GET"] == 0  # the request never reached the upstream
    proxy.inject(Fault.lost_response(), times=1)
    with pytest.raises(requests.ConnectionError):
        requests.put(f"{proxy.url}/p", data=b"1", timeout=10)
    assert upstream.hits["PUT"] == 1  # done upstream, but the client never heard
    assert get(proxy).status_code == 200


def test_delay_then_forward(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.inject(Fault.delay(0.5), times=2)
    started = time.monotonic()
    assert get(proxy).status_code == 200
    assert time.monotonic() - started >= 0.5
    with pytest.raises(requests.Timeout):
        get(proxy, timeout=0.1)


def test_down_refuses_connections_and_up_restores_the_same_port(proxy: FaultProxy) -> None:
    port = proxy.port
    with requests.Session() as session:
        assert session.get(f"{proxy.url}/x", timeout=10).status_code == 200
        proxy.down()
        with pytest.raises(requests.ConnectionError):
            session.get(f"{proxy.url}/x", timeout=10)  # the open connection was dropped, a new one refused
        proxy.up()
        assert session.get(f"{proxy.url}/x", timeout=10).status_code == 200
    assert proxy.port == port
    for _ in range(20):  # refused from the moment down() returns, not after the accept loop notices
        proxy.down()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        proxy.up()
    proxy.down()
    proxy.heal()  # heal also brings it back up
    assert get(proxy).status_code == 200


def test_terminates_tls_and_speaks_tls_to_the_upstream(tmp_path: Path) -> None:
    with Upstream(tmp_path / "upstream") as upstream, \
            FaultProxy(upstream.url, workdir=tmp_path, upstream_ca=upstream.cert) as proxy:
        assert proxy.url.startswith("https://") and proxy.ca_bundle is not None
        assert requests.get(f"{proxy.url}/t", verify=proxy.ca_bundle, timeout=10).content == b"GET /acct/t "
        proxy.inject(Fault.unavailable())
        assert requests.get(f"{proxy.url}/t", verify=proxy.ca_bundle, timeout=10).status_code == 503
        proxy.inject(Fault.reset())
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{proxy.url}/t", verify=proxy.ca_bundle, timeout=10)


def test_refuses_a_non_loopback_upstream() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("https://example.com/acct")

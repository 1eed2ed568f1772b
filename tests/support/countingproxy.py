"""An HTTPS ``CONNECT`` proxy on loopback that counts the bytes a client sends through it.

A client told ``HTTPS_PROXY=http://127.0.0.1:<port>`` opens its TLS connections to storage through it, so
the count is what went over the wire towards storage (TLS records: the bodies plus headers and framing),
whatever happened to the client afterwards (``kill -9`` included). Only loopback targets are accepted.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class CountingProxy:
    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.sent = 0  # bytes from clients to their targets
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, name="counting-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop = True
        self._server.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(line) < 2 or line[0] != "CONNECT":
                return
            host, _, port = line[1].rpartition(":")
            if host not in ("127.0.0.1", "localhost"):
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                return
            with socket.create_connection((host, int(port)), timeout=30) as upstream:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                rest = head.split(b"\r\n\r\n", 1)[1]
                if rest:
                    upstream.sendall(rest)
                    self._count(len(rest))
                back = threading.Thread(target=self._pump, args=(upstream, conn, False), daemon=True)
                back.start()
                self._pump(conn, upstream, True)
                back.join(timeout=5)

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        with suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if count:
                    self._count(len(data))
        with suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _count(self, n: int) -> None:
        with self._lock:
            self.sent += n

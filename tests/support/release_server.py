"""An HTTPS file server for release downloads: serves a directory, honours `Range: bytes=N-`
(206), and can cut one file's transfer after some bytes (the first time it is asked), as a
mobile link drops mid-download."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class ReleaseServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.cut: dict[str, int] = {}  # file name -> cut after this many bytes (once)
        self.ranges: list[str] = []  # the Range headers received

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: ReleaseServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = (self.server.root / self.path.lstrip("/")).resolve()
        if not path.is_file() or self.server.root.resolve() not in path.parents:
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng:
            self.server.ranges.append(rng)
            start = int(rng.removeprefix("bytes=").split("-")[0])
        body = data[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.server.cut.pop(path.name, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(2)  # the link drops mid-file
            return
        self.wfile.write(body)


@contextmanager
def serve_https(root: Path, cert: Path, key: Path) -> Iterator[ReleaseServer]:
    server = ReleaseServer(root)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()

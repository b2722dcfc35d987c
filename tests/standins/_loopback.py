"""Serve an in-process stand-in (a ``handle(httpx.Request) -> httpx.Response`` callable) on
127.0.0.1 in a background thread, optionally over TLS with client certificates.

The same handler backs ``httpx.MockTransport`` (in-process tests) and the loopback server
(tests that go through the app's services, which build their own adapters from settings).
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

Handler = Callable[[httpx.Request], httpx.Response]
PEER_CERT_HEADER = "x-standin-peer-cert-cn"  # set by the server only, never trusted from clients


@contextlib.contextmanager
def serve(handler: Handler, *, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Run ``handler`` on 127.0.0.1:<free port>; yields the base URL."""

    class _Req(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def log_message(self, *args):  # keep test output quiet
            pass

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = [(k, v) for k, v in self.headers.items() if k.lower() != PEER_CERT_HEADER]
            peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
            if peer:
                cn = next((v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"), "")
                headers.append((PEER_CERT_HEADER, cn))
            scheme = "https" if tls else "http"
            request = httpx.Request(self.command, f"{scheme}://{self.headers.get('Host', '127.0.0.1')}{self.path}",
                                    headers=headers, content=body)
            response = handler(request)
            payload = response.content
            self.send_response(response.status_code)
            for k, v in response.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Req)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

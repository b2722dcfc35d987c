"""Serve a stand-in on 127.0.0.1 (a thread running wsgiref), for the app and browser tests.

    served = serve(RunPodStandIn())
    account.settings["base_url"] = served.url
    ...
    served.stop()

Also runnable for demos: ``python -m tests.standins.server runpod --port 8701 --key demo``.
"""

from __future__ import annotations

import argparse
import http
import socketserver
import threading
import time
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx

from .base import Exchange, StandIn


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        return


def wsgi_app(standin: StandIn):
    """A WSGI application answering like ``standin``."""

    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        query = environ.get("QUERY_STRING", "")
        url = f"http://{environ.get('HTTP_HOST', '127.0.0.1')}{environ.get('PATH_INFO', '/')}" + (f"?{query}" if query else "")
        request = httpx.Request(environ["REQUEST_METHOD"], url, headers=headers, content=body)
        if standin.latency:
            time.sleep(standin.latency)
        response, op = standin.dispatch(request)
        standin.exchanges.append(Exchange(request, response, op))
        if response is None:  # a simulated timeout: answer only after the client gave up
            time.sleep(standin.timeout_seconds)
            response = httpx.Response(504, content=b"")
        response.read()
        phrase = http.HTTPStatus(response.status_code).phrase
        out_headers = [(k, v) for k, v in response.headers.items() if k.lower() not in ("content-length", "connection")]
        out_headers.append(("Content-Length", str(len(response.content))))
        start_response(f"{response.status_code} {phrase}", out_headers)
        return [response.content]

    return app


@dataclass
class Served:
    standin: StandIn
    url: str
    server: WSGIServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(standin: StandIn, host: str = "127.0.0.1", port: int = 0) -> Served:
    """Start ``standin`` on ``host``:``port`` (0 = a free port) in a daemon thread."""
    server = make_server(host, port, wsgi_app(standin), server_class=_ThreadingServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name=f"standin-{standin.name}", daemon=True)
    thread.start()
    return Served(standin, f"http://{host}:{server.server_port}", server, thread)


def main() -> None:  # pragma: no cover - manual demo entry point
    from .fixtures import STANDINS

    parser = argparse.ArgumentParser(description="Serve a provider stand-in on 127.0.0.1")
    parser.add_argument("provider", choices=sorted(STANDINS))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default="test-key", help="the API key (Hetzner: user:password)")
    parser.add_argument("--boot-seconds", type=float, default=20.0)
    args = parser.parse_args()
    standin = STANDINS[args.provider](api_keys=(args.key,), boot_seconds=args.boot_seconds)
    served = serve(standin, port=args.port)
    print(f"{args.provider} stand-in on {served.url} (key {args.key!r}); Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        served.stop()


if __name__ == "__main__":  # pragma: no cover
    main()

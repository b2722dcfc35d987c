"""The HTTP server of one running Sandbox pod (standard library only; run as a script).

    python sandbox_pod_server.py --pod POD_ID --boot-in SECONDS [--end-in SECONDS] [--alive-path DIR]

It binds a free loopback port at once and prints it (one line), but listens only once the pod
has booted: until then a connection is refused, as it is by a real pod still starting, so the
gateway's default readiness check (a TCP connect) fails. ``GET /healthz`` answers 200 "ok";
every other path answers 200 with the pod id as JSON. With ``--end-in`` it stops serving at
that moment (a spot interruption or a job's exit), as the real machine would disappear. With
``--alive-path`` it exits once that folder is gone (the stack's ``var/`` folder: a soak's
throw-away folder takes its pods with it).
"""

import argparse
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pod", required=True)
    parser.add_argument("--boot-in", type=float, default=0.0)
    parser.add_argument("--end-in", type=float, default=None)
    parser.add_argument("--alive-path", default="")
    args = parser.parse_args()
    started = time.monotonic()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    print(port, flush=True)
    sys.stdout.close()

    pod = args.pod

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?")[0] == "/healthz":
                body, kind = b"ok\n", "text/plain"
            else:
                body = json.dumps({"pod": pod, "port": port, "path": self.path}).encode()
                kind = "application/json"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, *a) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    time.sleep(max(0.0, args.boot_in - (time.monotonic() - started)))
    sock.listen(128)
    if args.end_in is not None:
        def end() -> None:
            time.sleep(max(0.0, args.end_in - (time.monotonic() - started)))
            server.shutdown()
        threading.Thread(target=end, daemon=True).start()
    if args.alive_path:
        def watch() -> None:
            while os.path.exists(args.alive_path):
                time.sleep(2)
            server.shutdown()
        threading.Thread(target=watch, daemon=True).start()
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A local heartbeat endpoint for trying the in-pod agent on a GPU host without a provisioner.

Speaks the same contract as the provisioner's /agent/heartbeat/<pod-id>/ endpoint: a bearer
token, a JSON body {"gpus": [{"index","util","mem_used_mb","mem_total_mb"}], "source",
"agent_version", "interval", "error"}, 204 on success, 401 on a wrong token, 400 on a bad
body. Every accepted report is appended to a JSONL file. Standard library only.

    python3 local_heartbeat.py --port 8765 --token T --out readings.jsonl &
    AGENT_HEARTBEAT_URL=http://127.0.0.1:8765/agent/heartbeat/local/ AGENT_TOKEN=T AGENT_INTERVAL=5 \
        python3 provisioner_agent.py
"""

from __future__ import annotations

import argparse
import hmac
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def valid_report(body: object) -> str:
    """'' when the report has the agent's shape, else what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("gpus"), list):
        return "body must be an object with a gpus list"
    for g in body["gpus"]:
        if not isinstance(g, dict) or not isinstance(g.get("index"), int):
            return "each gpu needs an integer index"
        util = g.get("util")
        if not isinstance(util, (int, float)) or not 0 <= util <= 100:
            return "util must be a number between 0 and 100"
    return ""


def make_handler(token: str, out_path: str):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or not hmac.compare_digest(auth[7:], token):
                return self._reply(401, {"error": "bad token"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0") or 0)))
            except (ValueError, json.JSONDecodeError):
                return self._reply(400, {"error": "not JSON"})
            problem = valid_report(body)
            if problem:
                return self._reply(400, {"error": problem})
            with open(out_path, "a") as fh:
                fh.write(json.dumps({"received_at": time.time(), **body}) + "\n")
            self.send_response(204)
            self.end_headers()

        def _reply(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", default="readings.jsonl")
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.token, args.out)).serve_forever()


if __name__ == "__main__":
    main()

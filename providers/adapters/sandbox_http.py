"""Start and stop the HTTP server of Sandbox pods (one process on a loopback port per pod).

The Sandbox's "cloud" lives in the database, so any process (web, worker, beat) may launch or
terminate a pod: the server is a detached process whose pid and port are kept in the instance's
``spec["http"]``, and it is stopped by pid. A server that died (the machine restarted) is started
again the next time the pod is read while it runs (``ensure``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("sandbox_pod_server.py")
START_TIMEOUT = 5.0


def start(pod_id: str, *, boot_in: float, end_in: float | None, alive_path: str = "") -> dict[str, int]:
    """Start the server; returns ``{"port", "pid"}``. It exits by itself once ``alive_path`` is gone."""
    argv = [sys.executable, "-I", "-S", str(SCRIPT), "--pod", pod_id, "--boot-in", f"{max(0.0, boot_in):.3f}"]
    if alive_path:
        argv += ["--alive-path", alive_path]
    if end_in is not None:
        argv += ["--end-in", f"{max(0.0, end_in):.3f}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)
    line = proc.stdout.readline() if proc.stdout else b""
    if proc.stdout:
        proc.stdout.close()
    try:
        port = int(line.strip())
    except ValueError as exc:
        proc.kill()
        raise RuntimeError(f"the Sandbox pod server did not start (said {line!r})") from exc
    _started[:] = [p for p in _started if p.poll() is None]
    _started.append(proc)
    return {"port": port, "pid": proc.pid}


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, PermissionError):
        return False
    for proc in _started:  # our own child that exited: reap it (no zombie answering "alive")
        if proc.pid == pid and proc.poll() is not None:
            return False
    return True


def stop(pid: int | None) -> None:
    if not pid:
        return
    try:
        os.kill(int(pid), signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in _started:
        if proc.pid == pid:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()


def stop_all_started() -> None:
    """Stop every server this process started (tests, benches)."""
    for proc in list(_started):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
    _started.clear()


_started: list[subprocess.Popen] = []

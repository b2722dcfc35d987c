"""A real OpenSSH server on 127.0.0.1 for the Hetzner bootstrap tests (Debian's openssh-server).

It runs with a temporary host key and admits the current user with a temporary key only. Its
sessions get a PATH whose first directory holds shims of ``docker``, ``nvidia-smi`` and of every
installer the bootstrap may call (apt-get, ubuntu-drivers, nvidia-ctk, systemctl, curl, gpg): each
appends what it was asked to run to ``calls.log`` and answers like the real tool would on a
server in the state the test chose (``state/`` holds flags: ``no-driver``, ``no-runtime``,
``pull-fails``, ``exits``). Nothing installs anything on this machine.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from providers.adapters.hetzner_bootstrap import load_private_key, md5_fingerprint

SSHD = "/usr/sbin/sshd"

_LOG = 'echo "$(basename "$0") $*" >> "$SHIM_DIR/calls.log"'
SHIMS = {
    "docker": r"""
case "$1" in
  version) echo 27.3.1 ;;
  info) if [ -e "$SHIM_DIR/state/no-runtime" ]; then echo '{"runc":{"path":"runc"}}';
        else echo '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}'; fi ;;
  login) cat > "$SHIM_DIR/login-stdin" ; echo "Login Succeeded" ;;
  pull) if [ -e "$SHIM_DIR/state/pull-fails" ]; then echo "Error response from daemon: manifest unknown" >&2; exit 1; fi
        echo "Status: Downloaded newer image for $2" ;;
  run) shift; cp "$(echo "$@" | sed -n 's/.*--env-file \([^ ]*\).*/\1/p')" "$SHIM_DIR/env-seen" 2>/dev/null
       echo 4f2d9c0a1b3e ;;
  inspect) if [ -e "$SHIM_DIR/state/exits" ]; then echo false; else echo true; fi ;;
  logs) echo "python: can't open file '/app/serve.py'" ;;
  rm) exit 0 ;;
  *) exit 0 ;;
esac
""",
    "nvidia-smi": r"""
if [ -e "$SHIM_DIR/state/no-driver" ]; then echo "nvidia-smi: command not found" >&2; exit 127; fi
echo "NVIDIA RTX 4000 SFF Ada Generation, 550.127.05"
""",
    "ubuntu-drivers": r"""
if [ "$1" = list ]; then echo "nvidia-driver-550-server, (kernel modules provided by linux-modules-nvidia-550-server-generic)"; fi
""",
    "nvidia-ctk": 'rm -f "$SHIM_DIR/state/no-runtime"',
}
# installers that only need to succeed (and be recorded)
for _name in ("apt-get", "systemctl", "systemd-run", "curl", "gpg"):
    SHIMS.setdefault(_name, "exit 0")


@dataclass
class SshServer:
    port: int
    user: str
    private_key: str  # OpenSSH text, the "account's key"
    host_key_fingerprint: str
    root: Path
    process: subprocess.Popen

    def calls(self) -> list[str]:
        log = self.root / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def set_state(self, *flags: str) -> None:
        for flag in flags:
            (self.root / "state" / flag).touch()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _openssh_private(key: ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(root: Path, private_key: str | None = None) -> SshServer:
    """Start sshd in ``root`` (a temporary directory) and wait until it answers. It admits
    ``private_key`` (OpenSSH text; a fresh ed25519 key by default) for the current user."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "bin").mkdir()
    (root / "state").mkdir()
    for name, body in SHIMS.items():
        path = root / "bin" / name
        path.write_text(f"#!/bin/sh\n{_LOG}\n{body.strip()}\n")
        path.chmod(0o755)
    host = ed25519.Ed25519PrivateKey.generate()
    (root / "host_ed25519").write_text(_openssh_private(host))
    (root / "host_ed25519").chmod(0o600)
    client_text = private_key or _openssh_private(ed25519.Ed25519PrivateKey.generate())
    pkey = load_private_key(client_text)
    (root / "authorized_keys").write_text(f"{pkey.get_name()} {pkey.get_base64()} bootstrap-test\n")
    host_pkey = load_private_key(_openssh_private(host))
    port = _free_port()
    user = getpass.getuser()
    config = root / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {root}/host_ed25519",
        f"AuthorizedKeysFile {root}/authorized_keys", f"PidFile {root}/sshd.pid",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no", f"AllowUsers {user}",
        f"SetEnv PATH={root}/bin:/usr/local/bin:/usr/bin:/bin SHIM_DIR={root}",
        "Subsystem sftp internal-sftp", "LogLevel ERROR",
    ]) + "\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=open(root / "sshd.log", "wb"))  # noqa: SIM115 - lives as long as sshd
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {(root / 'sshd.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        raise RuntimeError("sshd did not start listening")
    return SshServer(port=port, user=user, private_key=client_text, host_key_fingerprint=md5_fingerprint(host_pkey),
                     root=root, process=process)

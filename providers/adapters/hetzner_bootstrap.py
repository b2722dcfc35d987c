"""Bootstrap of a delivered Hetzner dedicated server over SSH: driver, runtime, container.

Robot installs an operating system and nothing else (no user-data hook), so the workload is
started by us, from the worker, over SSH with the account's key (paramiko; never a local
``ssh`` process). Every step first *verifies* and only installs what is missing, so a run that
was interrupted (worker restart, the reboot a fresh driver needs) is simply run again:

1. connect -- the server's host key must be one Robot listed in the order transaction
   (``host_key``: MD5 fingerprints, Robot webservice doc, "GET /order/server/transaction/{id}");
   with none listed, the first key seen is pinned and every later connection must match it;
2. driver -- ``nvidia-smi`` answers, else ``ubuntu-drivers install --gpgpu`` (Ubuntu's
   documented way to install the NVIDIA server driver) and a reboot (the run is retried);
3. runtime -- ``docker`` answers and lists the ``nvidia`` runtime, else docker.io and the NVIDIA
   Container Toolkit from NVIDIA's apt repository, then ``nvidia-ctk runtime configure
   --runtime=docker`` (NVIDIA Container Toolkit install guide, "Installing with Apt" and
   "Configuring Docker");
4. registry login -- password on stdin, never in a command line;
5. pull, then start the container (environment through a mode-600 env file written over SFTP,
   so secrets never appear in a process list) and check that it runs;
6. the GPU agent runs on the host, not in the container: the host has the driver and python3
   whatever the image holds, so utilization is reported for every image (a transient systemd
   unit, restarted if it dies; its token in a mode-600 environment file).

The install commands are defaults for Hetzner's Ubuntu images; an account can override them
(``settings["bootstrap_commands"]``). Errors are either :class:`BootstrapRetry` (not ready
yet: SSH not up, rebooting) or :class:`BootstrapFailed` (the pod fails, the order is cancelled).
"""

from __future__ import annotations

import hashlib
import io
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .base import LaunchRequest
from .image_registry import registry_login

if TYPE_CHECKING:
    import paramiko

DEFAULT_DIR = "/var/lib/provisioner"
CONNECT_TIMEOUT = 20.0
COMMAND_TIMEOUT = 1800.0  # a driver install on a fresh server takes minutes

DEFAULT_COMMANDS: dict[str, str] = {
    "driver_check": "nvidia-smi --query-gpu=name,driver_version --format=csv,noheader",
    # Ubuntu Server docs, "NVIDIA drivers installation": the server (GPGPU) driver of
    # ``ubuntu-drivers list --gpgpu`` plus its nvidia-utils package, which carries nvidia-smi
    "driver_install": ("export DEBIAN_FRONTEND=noninteractive; apt-get update -q && "
                       "apt-get install -y -q ubuntu-drivers-common && "
                       "drv=$(ubuntu-drivers list --gpgpu 2>/dev/null | grep -o 'nvidia-driver-[0-9]*-server' "
                       "| sort -V | tail -1) && test -n \"$drv\" && "
                       "apt-get install -y -q \"$drv\" \"$(echo $drv | sed s/driver/utils/)\""),
    "reboot": "systemctl reboot",
    "docker_check": "docker version --format '{{.Server.Version}}'",
    "docker_install": "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q docker.io",
    "runtime_check": "docker info --format '{{json .Runtimes}}'",
    "runtime_install": (
        "export DEBIAN_FRONTEND=noninteractive; "
        "curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey "
        "| gpg --dearmor --yes -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg && "
        "curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list "
        "| sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g' "
        "> /etc/apt/sources.list.d/nvidia-container-toolkit.list && "
        "apt-get update -q && apt-get install -y -q nvidia-container-toolkit && "
        "nvidia-ctk runtime configure --runtime=docker && systemctl restart docker"),
}

Progress = Callable[[str], None]


class BootstrapRetry(Exception):
    """Not ready yet (SSH not answering, rebooting): run the bootstrap again later."""


class BootstrapFailed(Exception):
    """The bootstrap cannot succeed on this server: the pod fails and the order is cancelled."""

    def __init__(self, step: str, message: str):
        super().__init__(f"{step}: {message}")
        self.step, self.message = step, message


@dataclass
class SshTarget:
    host: str
    private_key: str
    port: int = 22
    username: str = "root"
    host_keys: list[str] = field(default_factory=list)  # MD5 fingerprints Robot listed, "aa:bb:..."
    pinned: str = ""  # the fingerprint seen on the first connection, when Robot listed none


def load_private_key(text: str) -> paramiko.PKey:
    """Parse an OpenSSH/PEM private key (ed25519, ECDSA or RSA); ValueError when it is none."""
    paramiko = _ssh()
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text.strip() + "\n"))
        except (paramiko.SSHException, ValueError, IndexError, TypeError):
            continue
    raise ValueError("not an unencrypted OpenSSH or PEM private key (ed25519, ECDSA or RSA)")


def md5_fingerprint(key: paramiko.PKey) -> str:
    """The fingerprint format Robot uses for keys ("15:28:b0:..."): MD5 of the public key blob."""
    digest = hashlib.md5(key.asbytes(), usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


class _HostKeyCheck:
    """Accept the server only with a host key we were told about (or pinned before): a paramiko
    missing-host-key policy (``SSHClient`` calls ``missing_host_key``; no base class needed)."""

    def __init__(self, target: SshTarget):
        self.target = target
        self.seen = ""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.seen = md5_fingerprint(key)
        expected = [k.lower() for k in self.target.host_keys] or ([self.target.pinned] if self.target.pinned else [])
        if expected and self.seen not in expected:
            raise BootstrapFailed("connect", f"host key {self.seen} of {hostname} is not the server's "
                                             f"(expected {', '.join(expected)}); not connecting")


def _ssh():
    """paramiko, imported when a connection is made: with its optional invoke it costs ~35 MB and
    0.2 s in every process that imports the adapters (web, beat), and only the worker's bootstrap
    of a Hetzner server connects."""
    import paramiko

    return paramiko


@dataclass
class Result:
    code: int
    output: str

    def tail(self, lines: int = 8) -> str:
        return "\n".join(self.output.strip().splitlines()[-lines:])


class Session:
    """One SSH connection to the server, with commands run one at a time."""

    def __init__(self, target: SshTarget, *, connect_timeout: float = CONNECT_TIMEOUT):
        paramiko = _ssh()
        self.target = target
        self.client = paramiko.SSHClient()
        self.policy = _HostKeyCheck(target)
        self.client.set_missing_host_key_policy(self.policy)
        try:
            pkey = load_private_key(target.private_key)
        except ValueError as exc:
            raise BootstrapFailed("connect", f"the account's SSH private key is unusable: {exc}") from exc
        try:
            self.client.connect(target.host, port=target.port, username=target.username, pkey=pkey,
                                timeout=connect_timeout, banner_timeout=connect_timeout, auth_timeout=connect_timeout,
                                allow_agent=False, look_for_keys=False)
        except paramiko.AuthenticationException as exc:
            raise BootstrapFailed("connect", f"the server refused the account's SSH key ({exc}); is it the key "
                                             "whose fingerprint the order used?") from exc
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            raise BootstrapRetry(f"SSH to {target.host}:{target.port} not answering yet ({exc})") from exc

    @property
    def host_key(self) -> str:
        return self.policy.seen

    def close(self) -> None:
        self.client.close()

    def run(self, command: str, *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT) -> Result:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise BootstrapRetry("the SSH connection dropped")
        chan = transport.open_session(timeout=CONNECT_TIMEOUT)
        chan.set_combine_stderr(True)
        chan.settimeout(timeout)
        chan.exec_command(command)
        if stdin is not None:
            chan.sendall(stdin.encode())
        chan.shutdown_write()
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                data = chan.recv(65536)
                if not data:
                    break
                chunks.append(data)
                if time.monotonic() > deadline:
                    raise TimeoutError
            code = chan.recv_exit_status()
        except TimeoutError as exc:
            raise BootstrapFailed("command", f"{command.split()[0]} gave no result within {timeout:.0f} s") from exc
        finally:
            chan.close()
        return Result(code, b"".join(chunks).decode(errors="replace"))

    def write_file(self, path: str, content: str, mode: int = 0o600) -> None:
        sftp = self.client.open_sftp()
        try:
            with sftp.open(path, "w") as fh:
                fh.chmod(mode)  # before the content: never world-readable, not even briefly
                fh.write(content)
        finally:
            sftp.close()


# --- the container ------------------------------------------------------------------------


def container_name(request: LaunchRequest) -> str:
    return f"provisioner-{request.tag}"


def env_file(env: dict[str, str]) -> str:
    """docker's --env-file format: one KEY=VALUE a line, taken literally (no quoting)."""
    lines = []
    for key, value in sorted(env.items()):
        if "\n" in str(value) or "\n" in key or "=" in key:
            raise BootstrapFailed("start", f"environment variable {key.splitlines()[0]!r} cannot go into an env file "
                                           "(a newline in its value, or '=' in its name)")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def docker_run_argv(request: LaunchRequest, *, env_path: str, volume_dir: str) -> list[str]:
    """``docker run`` for the pod: detached, restarted with the host, all GPUs, labelled."""
    argv = ["docker", "run", "-d", "--name", container_name(request), "--restart", "unless-stopped",
            "--gpus", "all", "--label", f"provisioner-pod={request.tag}", "--env-file", env_path]
    for p in request.ports:
        if p.get("port"):
            port = int(p["port"])
            # without public ingress the port is only reachable through an SSH tunnel
            argv += ["-p", f"{port}:{port}" if request.public_ingress else f"127.0.0.1:{port}:{port}"]
    for i, v in enumerate(request.volumes):
        mount = str(v.get("mount_path") or "")
        if not mount:
            continue
        # persistent volumes live on the server's disk for the server's lifetime
        argv += ["-v", f"{volume_dir}/{request.tag}-{i}:{mount}" if v.get("kind") == "persistent" else mount]
    if request.command:
        argv += ["--entrypoint", request.command[0], request.image, *request.command[1:], *request.args]
    else:
        argv += [request.image, *request.args]
    return argv


def _q(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


# --- the run ------------------------------------------------------------------------------


# the agent fetches its script from the provisioner, like the in-container wrapper does
AGENT_PYTHON = ("import os, urllib.request; exec(compile(urllib.request.urlopen(os.environ['AGENT_SCRIPT_URL'], "
                "timeout=15).read(), 'provisioner_agent.py', 'exec'))")


def agent_unit(request: LaunchRequest) -> str:
    return f"provisioner-agent-{request.tag}"


def bootstrap(target: SshTarget, request: LaunchRequest, progress: Progress, *,
              agent_env: dict[str, str] | None = None, settings: dict[str, Any] | None = None,
              connect_timeout: float = CONNECT_TIMEOUT) -> dict[str, Any]:
    """Bring ``request``'s container up on the server, and the GPU agent beside it when
    ``agent_env`` (its AGENT_* variables) is given. Returns facts for the pod's connection
    (``host_key``, ``container``, ``driver``). Raises BootstrapRetry / BootstrapFailed."""
    settings = settings or {}
    commands = {**DEFAULT_COMMANDS, **(settings.get("bootstrap_commands") or {})}
    base = str(settings.get("bootstrap_dir") or DEFAULT_DIR).rstrip("/")
    session = Session(target, connect_timeout=connect_timeout)
    try:
        progress(f"Connected over SSH to {target.host} (host key {session.host_key})")
        driver = _ensure_driver(session, commands, progress)
        _ensure_runtime(session, commands, progress)
        name = container_name(request)
        creds = registry_login(request)
        if creds:
            # to the host the image is pulled from (image_registry), whatever the credential's text says
            login = _q(["docker", "login", "--username", creds.username, "--password-stdin", creds.host])
            r = session.run(login, stdin=creds.password)
            if r.code:
                raise BootstrapFailed("registry login", f"docker login {creds.host} failed: {r.tail(3)}")
            progress(f"Logged in to {creds.host}")
        progress(f"Pulling {request.image}")
        r = session.run(_q(["docker", "pull", request.image]))
        if r.code:
            raise BootstrapFailed("pull", f"docker pull {request.image} failed: {r.tail(3)}")
        session.run(_q(["mkdir", "-p", "-m", "700", base, f"{base}/volumes"]))
        env_path = f"{base}/{name}.env"
        session.write_file(env_path, env_file(request.env))
        session.run(_q(["docker", "rm", "-f", name]))  # a half-started earlier attempt
        r = session.run(_q(docker_run_argv(request, env_path=env_path, volume_dir=f"{base}/volumes")))
        if r.code:
            raise BootstrapFailed("start", f"docker run failed: {r.tail(3)}")
        state = session.run(_q(["docker", "inspect", "-f", "{{.State.Running}}", name]))
        if state.code or state.output.strip() != "true":
            logs = session.run(_q(["docker", "logs", "--tail", "20", name]))
            raise BootstrapFailed("start", f"the container is not running: {logs.tail(5) or state.tail(3)}")
        progress(f"Container {name} running ({request.image})")
        if agent_env:
            _start_agent(session, request, agent_env, f"{base}/{agent_unit(request)}.env", progress)
        # one URL per published http port, as the other providers give them (plain http: the
        # server is the workload's own; TLS is the workload's business)
        urls = {str(int(p["port"])): f"http://{target.host}:{int(p['port'])}" for p in request.ports
                if p.get("port") and p.get("protocol", "http") == "http" and request.public_ingress}
        return {"host_key": session.host_key, "container": name, "driver": driver, "urls": urls}
    finally:
        session.close()


LOGS_CONNECT_TIMEOUT = 8.0  # the Logs card waits for this in a web request
LOGS_COMMAND_TIMEOUT = 20.0


def container_logs(target: SshTarget, container: str, tail_lines: int, *,
                   connect_timeout: float = LOGS_CONNECT_TIMEOUT) -> str:
    """The last ``tail_lines`` lines the pod's container wrote (``docker logs``, stdout and stderr
    together), read over SSH with the same host-key check as the bootstrap. Raises BootstrapRetry
    (the server does not answer) or BootstrapFailed (wrong host key, key refused, docker failed)."""
    session = Session(target, connect_timeout=connect_timeout)
    try:
        r = session.run(_q(["docker", "logs", "--tail", str(max(1, int(tail_lines))), container]),
                        timeout=LOGS_COMMAND_TIMEOUT)
        if r.code:
            raise BootstrapFailed("logs", f"docker logs {container} failed: {r.tail(3)}")
        return r.output
    finally:
        session.close()


def _ensure_driver(session: Session, commands: dict[str, str], progress: Progress) -> str:
    r = session.run(commands["driver_check"])
    if r.code == 0 and r.output.strip():
        progress(f"NVIDIA driver present: {r.tail(1)}")
        return r.tail(1)
    progress("No NVIDIA driver answers; installing it (several minutes)")
    install = session.run(commands["driver_install"])
    if install.code:
        raise BootstrapFailed("driver", f"installing the NVIDIA driver failed: {install.tail(3)}")
    r = session.run(commands["driver_check"])
    if r.code == 0 and r.output.strip():
        progress(f"NVIDIA driver installed: {r.tail(1)}")
        return r.tail(1)
    # a fresh kernel module loads at boot: reboot and run again once SSH answers
    session.run(f"nohup sh -c {shlex.quote('sleep 2; ' + commands['reboot'])} >/dev/null 2>&1 &", timeout=30)
    progress("NVIDIA driver installed; rebooting the server to load it")
    raise BootstrapRetry("rebooting to load the NVIDIA driver")


def _ensure_runtime(session: Session, commands: dict[str, str], progress: Progress) -> None:
    if session.run(commands["docker_check"]).code:
        progress("Docker missing; installing docker.io")
        r = session.run(commands["docker_install"])
        if r.code or session.run(commands["docker_check"]).code:
            raise BootstrapFailed("runtime", f"installing Docker failed: {r.tail(3)}")
    runtimes = session.run(commands["runtime_check"])
    if runtimes.code == 0 and "nvidia" in runtimes.output:
        progress("Container runtime ready (docker with the nvidia runtime)")
        return
    progress("NVIDIA Container Toolkit missing; installing it")
    r = session.run(commands["runtime_install"])
    runtimes = session.run(commands["runtime_check"])
    if r.code or "nvidia" not in runtimes.output:
        raise BootstrapFailed("runtime", f"installing the NVIDIA Container Toolkit failed: {r.tail(3)}")
    progress("Container runtime ready (NVIDIA Container Toolkit installed)")


def _start_agent(session: Session, request: LaunchRequest, agent_env: dict[str, str], env_path: str,
                 progress: Progress) -> None:
    unit = agent_unit(request)
    session.write_file(env_path, env_file(agent_env))
    session.run(_q(["systemctl", "stop", unit]))  # an earlier attempt's agent (its token is revoked)
    r = session.run(_q(["systemd-run", "--unit", unit, "--collect", "--property=Restart=always",
                        "--property=RestartSec=30", f"--property=EnvironmentFile={env_path}",
                        "python3", "-c", AGENT_PYTHON]))
    if r.code:
        # the workload runs; only its telemetry is missing, which the pod page reports
        progress(f"GPU agent could not be started ({r.tail(2)}); utilization will be missing")
        return
    progress(f"GPU agent running on the host (unit {unit})")


"""Kubeconfig parsing and TLS material for the Kubernetes-based adapters (on-prem, CoreWeave).

A kubeconfig is uploaded by an admin and stored inside the account's encrypted
``credentials``. Only what a server-side client can use is accepted: the API server URL, a
bearer token or an embedded client certificate/key, and an embedded CA. File paths and
exec/auth-provider plugins refer to the admin's laptop and cannot work here, so they are
refused with a message that says what to upload instead.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from .base import InvalidCredentials


@dataclass(frozen=True)
class KubeConfig:
    server: str
    token: str = ""
    client_cert_pem: str = ""
    client_key_pem: str = ""
    ca_pem: str = ""
    insecure_skip_tls_verify: bool = False
    namespace: str = ""
    context: str = ""

    @property
    def auth_kind(self) -> str:
        return "token" if self.token else ("client-certificate" if self.client_cert_pem else "none")


def _named(items: Any, name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item.get(what) or {}
    raise InvalidCredentials(f"the kubeconfig has no {what} named {name!r}")


def _decode(value: str, what: str) -> str:
    try:
        return base64.b64decode(value, validate=False).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCredentials(f"the kubeconfig's {what} is not valid base64 PEM")


def parse_kubeconfig(text: str, context: str = "") -> KubeConfig:
    """Parse an uploaded kubeconfig (YAML) into what the HTTP client needs."""
    if not text or not text.strip():
        raise InvalidCredentials("upload a kubeconfig file")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        raise InvalidCredentials("the kubeconfig is not valid YAML")
    if not isinstance(doc, dict) or not doc.get("clusters"):
        raise InvalidCredentials("the file is not a kubeconfig (no clusters)")
    contexts = doc.get("contexts") or []
    ctx_name = context or doc.get("current-context") or (contexts[0].get("name") if contexts else "")
    if not ctx_name:
        raise InvalidCredentials("the kubeconfig has no context")
    ctx = _named(contexts, ctx_name, "context")
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(doc.get("users"), ctx["user"], "user") if ctx.get("user") else {}
    server = str(cluster.get("server") or "").rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise InvalidCredentials("the kubeconfig's cluster has no server URL")
    for key in ("certificate-authority", "client-certificate", "client-key", "tokenFile"):
        if (cluster.get(key) or user.get(key)) and not (cluster.get(f"{key}-data") or user.get(f"{key}-data")):
            raise InvalidCredentials(f"the kubeconfig refers to a file ({key}); embed it as {key}-data instead "
                                     "(kubectl config view --raw --flatten --minify)")
    if user.get("exec") or user.get("auth-provider"):
        raise InvalidCredentials("the kubeconfig uses an exec/auth-provider plugin, which cannot run on the server; "
                                 "use a ServiceAccount token or an embedded client certificate")
    cert = _decode(user["client-certificate-data"], "client-certificate-data") if user.get("client-certificate-data") else ""
    key = _decode(user["client-key-data"], "client-key-data") if user.get("client-key-data") else ""
    if bool(cert) != bool(key):
        raise InvalidCredentials("the kubeconfig has a client certificate without its key (or the reverse)")
    token = str(user.get("token") or "")
    if not token and not cert:
        raise InvalidCredentials("the kubeconfig's user has neither a token nor a client certificate")
    ca = _decode(cluster["certificate-authority-data"], "certificate-authority-data") if cluster.get("certificate-authority-data") else ""
    return KubeConfig(server=server, token=token, client_cert_pem=cert, client_key_pem=key, ca_pem=ca,
                      insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify")),
                      namespace=str(ctx.get("namespace") or ""), context=ctx_name)


@functools.cache
def default_tls() -> ssl.SSLContext:
    """The system trust store, loaded once per process (loading it costs tens of milliseconds)."""
    return ssl.create_default_context()


@contextlib.contextmanager
def private_pem_files(cert_pem: str, key_pem: str) -> Iterator[tuple[str, str]]:
    """Write a client certificate and key to owner-only temp files and delete them on exit.

    ``ssl`` can only load a certificate chain from files. The files live in a fresh 0700
    directory, are 0600, and exist only while the caller loads them.
    """
    directory = tempfile.mkdtemp(prefix="kube-")
    paths = (os.path.join(directory, "client.crt"), os.path.join(directory, "client.key"))
    try:
        for path, data in zip(paths, (cert_pem, key_pem), strict=True):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(data)
        yield paths
    finally:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.rmdir(directory)


def ssl_context(cfg: KubeConfig) -> ssl.SSLContext:
    """A TLS context trusting the kubeconfig's CA and presenting its client certificate."""
    ctx = ssl.create_default_context(cadata=cfg.ca_pem or None)
    if cfg.insecure_skip_tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.client_cert_pem:
        with private_pem_files(cfg.client_cert_pem, cfg.client_key_pem) as (cert_path, key_path):
            try:
                ctx.load_cert_chain(cert_path, key_path)
            except ssl.SSLError:
                raise InvalidCredentials("the kubeconfig's client certificate and key do not load")
    return ctx

#!/usr/bin/env python
"""``uv pip <command>`` with pip's own package-index configuration.

uv reads neither pip.conf nor PIP_* variables, so on a machine whose pip resolves through a local
mirror (``extra-index-url = file:///…``, ``find-links``, a custom CA bundle) a bare ``uv pip
install`` would look elsewhere than pip does. This asks pip (``pip config list``, the same view a
``pip install`` in this virtualenv has: files, then ``install.`` over ``global.``, then PIP_*
variables) and passes the equivalent uv options. Usage: ``.venv/bin/python tools/uvpip.py install
-r pyproject.toml -c requirements.lock`` (``make install`` and ``make lock`` call it).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

# pip's precedence, lowest first: config files ("global." then "install."), then environment variables
RANK = {"global": 1, "install": 2, ":env:": 3}


def pip_config(listing: str) -> dict[str, str]:
    """The effective value of each pip option from ``pip config list`` output (``section.key='value'``)."""
    best: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        key, sep, raw = line.partition("=")
        section, _, name = key.rpartition(".")
        if not sep or section not in RANK:
            continue
        value = ast.literal_eval(raw) if raw[:1] in "'\"" else raw
        if RANK[section] >= best.get(name, (0, ""))[0]:
            best[name] = (RANK[section], value)
    return {name: value for name, (_, value) in best.items()}


def uv_options(config: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """uv command-line options and environment variables equivalent to pip's configuration.

    Names from uv's documentation, "Settings" and "Environment variables"; pip's from "Configuration"
    and the ``pip install`` reference.
    """
    args: list[str] = []
    if config.get("index-url"):
        args += ["--default-index", config["index-url"]]
    for url in config.get("extra-index-url", "").split():
        args += ["--index", url]
    for location in config.get("find-links", "").split():
        args += ["--find-links", location]
    for host in config.get("trusted-host", "").split():
        args += ["--allow-insecure-host", host]
    for path in config.get("constraint", "").split():
        args += ["--constraint", path]
    if config.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        args.append("--no-index")
    # pip takes the best version across all its indexes; uv's default takes the first index that
    # has the name at all, which would hide PyPI's releases behind a partial local mirror
    args += ["--index-strategy", "unsafe-best-match"]
    env: dict[str, str] = {}
    if config.get("cert"):
        env["SSL_CERT_FILE"] = config["cert"]
    if config.get("timeout") or config.get("default-timeout"):
        env["UV_HTTP_TIMEOUT"] = config.get("timeout") or config["default-timeout"]
    return args, env


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    # `make run`'s virtualenv has no pip of its own (uv installs; pip comes with the dev extra): then
    # ask the pip of the Python that created it, which reads the same configuration files
    python = sys.executable if importlib.util.find_spec("pip") else getattr(sys, "_base_executable", sys.executable)
    listing = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True).stdout
    args, env = uv_options(pip_config(listing))
    uv = Path(sys.executable).with_name("uv")
    command = [str(uv), "pip", argv[0], "--python", sys.executable, *args, *argv[1:]]
    return subprocess.run(command, env={**os.environ, **env}).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

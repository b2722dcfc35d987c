"""Helpers for a pod's "Connect" card."""

from __future__ import annotations

import re

from django import template

register = template.Library()

_PORT = re.compile(r"\s-p\s*(?P<port>\d+)")


@register.filter
def vscode_remote_url(ssh_command: str) -> str:
    """``ssh -p 2222 root@1.2.3.4`` -> the link VS Code's Remote-SSH extension opens
    (``vscode://vscode-remote/ssh-remote+root@1.2.3.4:2222/root``); "" when it cannot tell.
    The format is the one the Remote-SSH extension registers: ``ssh-remote+<[user@]host[:port]><path>``."""
    words = [w for w in (ssh_command or "").split() if w != "ssh"]
    target = next((w for i, w in enumerate(words) if not w.startswith("-") and (i == 0 or not words[i - 1].startswith("-"))), "")
    if not target:
        return ""
    user, _, host = target.rpartition("@")
    port = (m := _PORT.search(f" {ssh_command}")) and m["port"]
    authority = f"{user + '@' if user else ''}{host}{':' + port if port and port != '22' else ''}"
    # open the user's home; with no user named, let VS Code ask for the folder
    home = {"": "", "root": "/root"}.get(user, f"/home/{user}")
    return f"vscode://vscode-remote/ssh-remote+{authority}{home}"

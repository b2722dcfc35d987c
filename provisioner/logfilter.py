"""Secrets never reach the logs: a logging filter that scrubs known secret values and
secret-looking key/value pairs. No Django imports here: logging is configured before the apps."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

_known_secrets: set[str] = set()
_lock = threading.Lock()

_PATTERNS = [
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer|basic|token)?\s*[^\s,'\"}]+"),
    re.compile(r"(?i)([\"']?(?:api[_-]?key|apikey|token|secret|password|passwd|client_secret|private_key|access_key|secret_access_key)[\"']?\s*[:=]\s*[\"']?)([^\s,'\"}]+)"),
    re.compile(r"(?i)([?&](?:api_key|token|key|access_token)=)([^&\s]+)"),
]


def register_secret(value: str) -> None:
    """Remember a secret value (e.g. a decrypted API key) so that it is scrubbed from any log line."""
    if isinstance(value, str) and len(value) >= 6:
        with _lock:
            _known_secrets.add(value)


# Strings that look like credentials even when we never saw them decrypted: vendor prefixes
# (OpenAI/Anthropic-style sk-, Hugging Face hf_, GitHub gh?_, NVIDIA nvapi-, RunPod rpa_, AWS access key
# ids AKIA/ASIA), JWTs, and any long mixed-case alphanumeric run with a digit (random API keys are
# base62; UUIDs and hex digests are single-case, so ids in messages survive).
_TOKEN_LIKE = re.compile(
    r"\b(?:sk-[A-Za-z0-9_\-]{16,}|hf_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|nvapi-[A-Za-z0-9_\-]{16,}"
    r"|rpa_[A-Za-z0-9]{16,}|(?:AKIA|ASIA)[0-9A-Z]{16}|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"
    r"|(?=[A-Za-z0-9_=\-]*[0-9])(?=[A-Za-z0-9_=\-]*[a-z])(?=[A-Za-z0-9_=\-]*[A-Z])[A-Za-z0-9_=\-]{32,})")


def redact(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """``text`` without any secret value we know of (decrypted in this process, or passed in
    ``extra_secrets``), key=value pairs that name a secret, and token-looking strings."""
    known = set(_known_secrets)
    known.update(s for s in extra_secrets if isinstance(s, str) and len(s) >= 6)
    for secret in sorted(known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    text = _PATTERNS[0].sub(lambda m: m.group(1) + "[REDACTED]", text)
    for pat in _PATTERNS[1:]:
        text = pat.sub(lambda m: m.group(1) + "[REDACTED]", text)
    return _TOKEN_LIKE.sub("[REDACTED]", text)


def secret_values(credentials: Any) -> list[str]:
    """Every string inside a credentials structure (dicts, lists, key files split into words)."""
    out: list[str] = []
    stack = [credentials]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, str) and item:
            out.append(item)
            if "\n" in item:
                out.extend(w.strip("'\"") for w in item.split() if len(w) >= 20)
    return out


def scrub_stored_error(text: str, credentials: Any = None) -> str:
    """What an error text may be stored (and so shown) as: secrets scrubbed, not only from logs
    (issue 16 §5: a provider error echoing the API key was rendered to every role)."""
    return redact(text or "", secret_values(credentials) if credentials else ())


class RedactSecretsFilter(logging.Filter):
    """Attached to every handler: renders the message, scrubs secrets, freezes the result."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not crash the app
            return True
        clean = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.msg, record.args = clean, ()
        return True



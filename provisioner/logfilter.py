"""Secrets never reach the logs: a logging filter that scrubs known secret values and
secret-looking key/value pairs. No Django imports here: logging is configured before the apps."""

from __future__ import annotations

import logging
import re
import threading

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


def redact(text: str) -> str:
    for secret in sorted(_known_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    text = _PATTERNS[0].sub(lambda m: m.group(1) + "[REDACTED]", text)
    for pat in _PATTERNS[1:]:
        text = pat.sub(lambda m: m.group(1) + "[REDACTED]", text)
    return text


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



"""A pod's logs, read from its provider on demand (never stored): scrubbed of secrets and capped
before a page shows them. Providers without a logs API are named, and the page points to SSH."""

from __future__ import annotations

from dataclasses import dataclass

from providers.adapters.base import NotSupported, ProviderError, supports_logs
from providers.adapters.registry import adapter_class
from providers.services import adapter_for
from provisioner.logfilter import redact, secret_values
from workloads.models import Pod

TAIL_LINES = 200
MAX_CHARS = 64 * 1024  # ~200 long lines; the tail is kept


@dataclass(frozen=True)
class PodLogs:
    text: str = ""
    truncated: bool = False
    unsupported: str = ""  # why this provider cannot give logs (shown in one line)
    error: str = ""  # the provider's answer when reading failed (scrubbed)


def provider_has_logs(pod: Pod) -> bool | None:
    """Whether the pod's provider has a logs API (None: not placed yet). No credentials needed."""
    if pod.provider_account is None:
        return None
    return supports_logs(adapter_class(pod.provider_account.kind))


def pod_logs(pod: Pod, *, tail_lines: int = TAIL_LINES) -> PodLogs:
    """The last ``tail_lines`` lines of the pod's output at its provider."""
    account = pod.provider_account
    if account is None or not pod.external_id:
        return PodLogs(error="The pod has no instance at a provider yet.")
    adapter = adapter_for(account)
    if not supports_logs(adapter):
        return PodLogs(unsupported=f"{adapter.info.label} has no API for a pod's logs.")
    secrets = secret_values(adapter.credentials)
    try:
        raw = adapter.logs(pod.external_id, tail_lines, connection=pod.connection or {})
    except NotSupported as exc:
        return PodLogs(unsupported=redact(str(exc), secrets)[:300])
    except ProviderError as exc:
        return PodLogs(error=redact(str(exc), secrets)[:500])
    text = redact(raw or "", secrets)
    truncated = len(text) > MAX_CHARS
    if truncated:  # keep whole lines at the end
        text = text[-MAX_CHARS:].partition("\n")[2]
    return PodLogs(text=text, truncated=truncated)

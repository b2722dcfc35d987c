"""The one interface every provider adapter implements.

Adapters are plain classes: they take decrypted credentials plus per-account settings,
talk to exactly one provider API, and return the dataclasses below. They never touch the
database; services in ``providers`` and ``workloads`` do that. Errors are typed so that
placement and failover can decide what to do without parsing messages.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

# --- errors -----------------------------------------------------------------------------


class ProviderError(Exception):
    """Base of every adapter error. ``retryable`` tells failover it may try again elsewhere."""

    retryable: ClassVar[bool] = False
    failover: ClassVar[bool] = False  # True: the next candidate offer should be tried

    def __init__(self, message: str = "", *, status: int | None = None, code: str = ""):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class InvalidCredentials(ProviderError):
    """The key/token was refused (401/403 or the provider's equivalent)."""


class CapacityUnavailable(ProviderError):
    """No capacity for the requested GPU class/count in that region right now."""

    failover = True


class QuotaExceeded(ProviderError):
    """The account's quota or limit at the provider is exhausted."""

    failover = True


class TransientError(ProviderError):
    """Timeouts, 429, 5xx: retry with backoff, honouring ``retry_after`` (seconds)."""

    retryable = True
    failover = True

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class LaunchTimeout(TransientError):
    """The launch call timed out client-side; the resource MAY exist (reconcile finds it)."""


class PermanentError(ProviderError):
    """Bad request or anything retrying cannot fix."""


class NotFound(ProviderError):
    """The resource does not exist (any more) at the provider."""


class NotSupported(ProviderError):
    """The provider has no such operation (e.g. Lambda cannot stop an instance)."""


class StopNotPossible(NotSupported):
    """The provider can stop instances, but refuses to stop *this* one (an EC2 instance of a
    one-time Spot request, an instance-store root): terminate it instead. Raised by ``stop``."""


# --- data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferData:
    """One purchasable shape at one place, as the provider quotes it right now.

    ``price_per_hour`` is per pod-hour (all GPUs of the shape) in ``currency``.
    """

    gpu_class: str  # canonical class, see providers.catalog.GPU_CLASSES
    gpu_count: int
    region: str
    country: str  # ISO 3166-1 alpha-2
    price_per_hour: Decimal
    currency: str = "USD"
    spot: bool = False
    zone: str = ""
    available: int | None = None  # units available, None when the provider only gives a level
    availability: str = ""  # NONE/LOW/MEDIUM/HIGH where the provider reports levels
    instance_type: str = ""  # the provider's SKU / type id to launch
    gpu_memory_gb: int | None = None
    setup_fee: Decimal = Decimal("0")  # one-off fee (Hetzner dedicated servers)
    monthly_price: Decimal | None = None  # monthly-billed servers (Hetzner)
    supports_volumes: tuple[str, ...] = ("ephemeral",)  # ephemeral / persistent / network
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class LaunchRequest:
    """Everything an adapter needs to stand one pod up. ``tag`` is the pod UUID (idempotency)."""

    tag: str
    name: str
    image: str
    gpu_class: str
    gpu_count: int
    region: str
    instance_type: str = ""
    zone: str = ""
    spot: bool = False
    bid_price_per_hour: Decimal | None = None
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # env keys whose value is a resolved tenant secret -> the secret's reference ("secret:<id>"):
    # anything that keeps a copy of the request (the Sandbox) keeps the reference, never the value
    env_refs: dict[str, str] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)  # {"port": 8888, "protocol": "http"}
    volumes: list[dict[str, Any]] = field(default_factory=list)  # {"kind","size_gb","mount_path"}
    disk_gb: int = 50
    public_ingress: bool = True
    # a private image's login: {"registry", "username", "password"}; where it goes is decided by
    # image_registry.registry_login (the image's own host), never by this dict's text alone
    registry_auth: dict[str, str] | None = None


# canonical pod states the adapters report (a subset of workloads.models.Pod.State)
REMOTE_PROVISIONING = "provisioning"
REMOTE_RUNNING = "running"
REMOTE_STOPPED = "stopped"
REMOTE_STOPPING = "stopping"  # on its way down (stopping, suspending, being torn down): not stopped yet
REMOTE_TERMINATED = "terminated"
REMOTE_FAILED = "failed"
REMOTE_INTERRUPTED = "interrupted"
REMOTE_EXITED = "exited"  # a job's container finished on its own


# kinds of a provider-side notice. The first take the pod (or its machine) away; the others say
# the pod comes back (a reboot), may be affected (maintenance) or is at elevated risk (rebalance)
NOTICE_INTERRUPTING = ("terminate", "stop", "preempt")
NOTICE_ADVISORY = ("reboot", "maintenance", "rebalance")


@dataclass(frozen=True)
class ProviderNotice:
    """What a provider's API says it will do to a still running pod, and from when.

    ``deadline`` is the earliest time the provider may act (None: it gave none, as node taints);
    ``source`` names the signal (an EC2 event code, a taint key, a pod condition) for the pod page.
    """

    kind: str
    deadline: datetime | None = None
    source: str = ""
    detail: str = ""

    @property
    def interrupting(self) -> bool:
        return self.kind in NOTICE_INTERRUPTING


@dataclass
class RemotePod:
    """A provider resource as the provider reports it."""

    external_id: str
    state: str
    tag: str = ""  # pod UUID we tagged it with, "" when untagged
    region: str = ""
    connection: dict[str, Any] = field(default_factory=dict)  # host, ssh_port, urls{port: url}
    price_per_hour: Decimal | None = None
    exit_code: int | None = None
    message: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    # a provider-side notice about this (still running) pod: what the provider will do, and when
    notice: ProviderNotice | None = None
    # a provisioning pod: when the provider expects it to run (its own boot estimate), so the
    # follow-up check can be scheduled then instead of on a fixed back-off
    expected_ready_at: datetime | None = None


@dataclass(frozen=True)
class GpuSample:
    gpu_index: int
    util_pct: float
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class CredentialField:
    """One field of a provider's credential form (rendered by the wizard)."""

    name: str
    label: str
    help: str = ""
    secret: bool = True
    required: bool = True
    multiline: bool = False
    file: bool = False  # uploaded (kubeconfig, service-account JSON)


@dataclass(frozen=True)
class SettingField:
    """One per-account option the wizard and the account edit page show (stored in the account's
    settings, never secret), checked by the adapter's ``clean_settings``."""

    name: str
    label: str
    help: str = ""
    kind: str = "text"  # text / bool / multiline
    default: Any = ""


class SettingsInvalid(ValueError):
    """Per-field messages for an account's settings (``{field name: message}``)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class ProviderInfo:
    """Static facts about a provider kind, used by the wizard and placement. How it bills is
    billing.rules.BILLING_TABLE's alone (one table, citing the provider's documents)."""

    kind: str
    label: str
    description: str
    supports_spot: bool
    currency: str = "USD"
    monthly_billed: bool = False  # dedicated servers: amortized monthly price + setup fee
    slow_delivery: bool = False  # hours/days to deliver: poor fit for short jobs
    can_stop: bool = False  # stop (keep disk) distinct from terminate
    # pulls a private image with the workload's registry credential (image_registry.RegistryLogin);
    # placement leaves a provider without it out when the workload has a credential, and says why
    private_registry: bool = False
    # spot is rented by bid and the bid is what is charged (Vast.ai, RunPod): an offer's spot
    # price is the floor, and launches bid above it (workloads.placement.bids)
    spot_bids: bool = False
    # the provider only installs an OS: once it reports the server running, the workload is
    # started by the adapter's ``bootstrap`` (over SSH, from the worker) before the pod runs
    bootstrap_over_ssh: bool = False
    credential_fields: tuple[CredentialField, ...] = ()
    setting_fields: tuple[SettingField, ...] = ()
    regions_hint: str = ""


class ProviderAdapter(abc.ABC):
    """Interface every provider implements. One instance per account, short-lived."""

    info: ClassVar[ProviderInfo]

    def __init__(self, credentials: dict[str, Any], settings: dict[str, Any] | None = None):
        self.credentials = credentials or {}
        self.settings = settings or {}

    @classmethod
    def clean_settings(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The ``info.setting_fields`` values, normalized for the account's settings; raises
        SettingsInvalid. Adapters with setting fields override it."""
        return dict(values)

    # --- helpers every adapter shares -----------------------------------------------------------
    def opt(self, key: str) -> Any:
        """A per-account option: the account's settings, else the wizard's non-secret field."""
        value = self.settings.get(key)
        return value if value not in (None, "", [], {}) else self.credentials.get(key)

    @staticmethod
    def split_external_id(external_id: str, what: str = "pod") -> tuple[str, str]:
        """``"<place>/<id>"`` (GCP: zone/name, AWS: region/instance id) -> (place, id).

        An id without both parts is not one of ours: NotFound, so callers treat it as gone."""
        place, _, name = external_id.partition("/")
        if not place or not name:
            raise NotFound(f"not a {what} id: {external_id!r}")
        return place, name

    @abc.abstractmethod
    def verify(self) -> None:
        """Check the credentials live. Raises InvalidCredentials (or another ProviderError)."""

    @abc.abstractmethod
    def list_offers(self) -> list[OfferData]:
        """Current capacity and prices."""

    @abc.abstractmethod
    def launch(self, request: LaunchRequest) -> RemotePod:
        """Create the resource tagged with ``request.tag``. Idempotent on the tag where possible."""

    @abc.abstractmethod
    def get(self, external_id: str) -> RemotePod:
        """Current state. Raises NotFound once the resource is gone."""

    @abc.abstractmethod
    def terminate(self, external_id: str) -> None:
        """Destroy the resource. Succeeds silently if it is already gone."""

    @abc.abstractmethod
    def list_pods(self) -> list[RemotePod]:
        """Every resource of this account that carries one of our tags (for reconciliation)."""

    def stop(self, external_id: str) -> None:
        """Stop but keep the disk, where the provider can. Default: not supported."""
        raise NotSupported(f"{self.info.label} cannot stop a pod; terminate it instead")

    def gpu_utilization(self, external_id: str) -> list[GpuSample] | None:
        """Per-GPU utilization now, or None where the provider exposes none."""
        return None

    def logs(self, external_id: str, tail_lines: int, connection: Mapping[str, Any] | None = None) -> str:
        """The last ``tail_lines`` lines of the pod's output, as the provider keeps them (raw: the
        caller scrubs, escapes and caps). ``connection``: what the pod recorded of where it runs
        (a server of our own is read over SSH with it). Default: the provider has no logs API."""
        raise NotSupported(f"{self.info.label} has no API for a pod's logs")


def supports_logs(adapter: ProviderAdapter | type[ProviderAdapter]) -> bool:
    """True when the adapter (or adapter class) overrides ``logs``."""
    cls = adapter if isinstance(adapter, type) else type(adapter)
    return cls.logs is not ProviderAdapter.logs

"""Provider kind -> adapter class. The one place new providers are registered."""

from __future__ import annotations

import importlib
from typing import Any

from .base import ProviderAdapter, ProviderInfo

# kind -> "module:Class". Modules are imported lazily so that a missing optional SDK
# (boto3) only matters when that provider is actually used.
ADAPTERS: dict[str, str] = {
    "sandbox": "providers.adapters.sandbox:SandboxAdapter",
    "runpod": "providers.adapters.runpod:RunPodAdapter",
    "lambda": "providers.adapters.lambda_cloud:LambdaAdapter",
    "vast": "providers.adapters.vast:VastAdapter",
    "hetzner": "providers.adapters.hetzner:HetznerAdapter",
    "aws": "providers.adapters.aws:AwsAdapter",
    "gcp": "providers.adapters.gcp:GcpAdapter",
    "azure": "providers.adapters.azure:AzureAdapter",
    "kubernetes": "providers.adapters.kubernetes:KubernetesAdapter",
    "coreweave": "providers.adapters.coreweave:CoreWeaveAdapter",
}


def adapter_class(kind: str) -> type[ProviderAdapter]:
    try:
        target = ADAPTERS[kind]
    except KeyError as exc:
        raise KeyError(f"unknown provider kind {kind!r}") from exc
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def provider_info(kind: str) -> ProviderInfo:
    return adapter_class(kind).info


def all_provider_infos() -> list[ProviderInfo]:
    return [adapter_class(k).info for k in ADAPTERS]


def build_adapter(kind: str, credentials: dict[str, Any], settings: dict[str, Any] | None = None) -> ProviderAdapter:
    return adapter_class(kind)(credentials, settings or {})

"""Microsoft's SDK models as the judge of Azure bodies (azure-mgmt-compute / azure-mgmt-network,
test-only pins in pyproject.toml, oracles extra): used by the Azure stand-in to refuse what ARM refuses
and by tests/contract/test_azure_sdk.py to check both directions.

A body is loaded into the SDK model and walked with the model's own REST names: a key the model
does not define (unknown or misspelled), or a value outside an enum the SDK declares, is an error.
"""

from __future__ import annotations

import enum
import typing
from typing import Any

from azure.mgmt.compute import models as compute_models
from azure.mgmt.network import models as network_models

# Extensible enums the SDK itself calls out of date: HardwareProfile.vm_size's VirtualMachineSizeTypes
# is documented as deprecated ("Recommended way to get the list of available sizes is using these
# APIs" -- the resource SKUs the adapter reads), so newer sizes (NC A100 v4...) are not in it.
STALE_ENUMS = {"VirtualMachineSizeTypes"}


def _enums(annotation: Any) -> list[type[enum.Enum]]:
    out = []
    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, enum.Enum) and arg.__name__ not in STALE_ENUMS:
            out.append(arg)
        elif typing.get_args(arg):
            out += _enums(arg)
    return out


def _hints(cls: type, models) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, localns={"_models": models})
    except NameError:
        return {}


def model_errors(model: Any, models, where: str) -> list[str]:
    """Keys of the raw JSON that ``model`` does not define, and enum values it does not list."""
    cls = type(model)
    fields = {f._rest_name: attr for attr, f in cls._attr_to_rest_field.items()}
    hints = _hints(cls, models)
    errors = [f"{where}.{key}: not a field of {cls.__name__}" for key in dict(model) if key not in fields]
    for key, attr in fields.items():
        if key not in dict(model):
            continue
        value = getattr(model, attr)
        for kind in _enums(hints.get(attr)):
            if isinstance(value, str) and value.lower() not in {str(m.value).lower() for m in kind}:
                errors.append(f"{where}.{key}: {value!r} is not a {kind.__name__}")
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if hasattr(type(item), "_attr_to_rest_field"):
                errors += model_errors(item, models, f"{where}.{key}" + (f"[{i}]" if isinstance(value, list) else ""))
    return errors


def vm_errors(body: dict[str, Any]) -> list[str]:
    return model_errors(compute_models.VirtualMachine(body), compute_models, "VirtualMachine")


def nic_errors(body: dict[str, Any]) -> list[str]:
    return model_errors(network_models.NetworkInterface(body), network_models, "NetworkInterface")




def public_ip_errors(body: dict[str, Any]) -> list[str]:
    return model_errors(network_models.PublicIPAddress(body), network_models, "PublicIPAddress")


def nsg_errors(body: dict[str, Any]) -> list[str]:
    return model_errors(network_models.NetworkSecurityGroup(body), network_models, "NetworkSecurityGroup")


def security_rule_errors(body: dict[str, Any]) -> list[str]:
    return model_errors(network_models.SecurityRule(body), network_models, "SecurityRule")

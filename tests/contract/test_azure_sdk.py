"""Azure request and answer bodies against Microsoft's SDK models (issue 13 §1): azure-mgmt-compute
39.0.0 (``VirtualMachine``, api-version 2024-07-01 and later) and azure-mgmt-network 33.1.0
(``NetworkInterface``, ``PublicIPAddress``, ``NetworkSecurityGroup``, ``SecurityRule``), pinned in pyproject.toml (oracles extra).

Each body is loaded into the SDK model and walked field by field with the model's own REST
names: a key the model does not define (unknown or misspelled), or a value outside an enum the
SDK declares, fails. The adapter PUTs four bodies -- the NSG (``NetworkSecurityGroup`` with its
``SecurityRule``s), the Standard public IP (``PublicIPAddress``), the NIC referencing both and the
VM -- and the stand-in answers them, and GETs, with the same resources; both directions are checked.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.adapters.azure import AzureAdapter
from providers.adapters.base import LaunchRequest
from providers.adapters.rest import tokens
from tests.standins.azure import FakeAzure, account_settings, credentials
from tests.standins.azure_models import nic_errors, nsg_errors, public_ip_errors, security_rule_errors, vm_errors

CHECKS = {"virtualMachines": vm_errors, "networkInterfaces": nic_errors, "publicIPAddresses": public_ip_errors,
          "networkSecurityGroups": nsg_errors}


@pytest.fixture
def azure():
    tokens.clear()
    fa = FakeAzure()
    a = AzureAdapter(credentials(), account_settings("https://azure.invalid", ssh_source_cidrs=["203.0.113.7/32", "198.51.100.0/24"]),
                     transport=fa.transport(), sleep=lambda s: None)
    a.verify()
    a.list_offers()
    spot = a.launch(LaunchRequest(tag="aaaaaaaa-0000-4000-8000-0000000000a1", name="nb", image="jupyter/base-notebook",
                                  gpu_class="A100-80", gpu_count=1, region="eastus", zone="1",
                                  instance_type="Standard_NC24ads_A100_v4", spot=True, bid_price_per_hour=Decimal("0.9"),
                                  ports=[{"port": 8888}, {"port": 6006, "protocol": "tcp"}], env={"A": "1"},
                                  volumes=[{"kind": "persistent", "size_gb": 64, "mount_path": "/data"}]))
    plain = a.launch(LaunchRequest(tag="bbbbbbbb-0000-4000-8000-0000000000b1", name="svc", image="vllm/vllm-openai",
                                   gpu_class="T4", gpu_count=1, region="eastus", instance_type="Standard_NC4as_T4_v3"))
    a.get(spot.external_id)
    a.list_pods()
    a.terminate(plain.external_id)
    return fa


def _kind(path: str) -> str | None:
    tail = path.rstrip("/").split("/")
    if len(tail) >= 2 and tail[-2] in CHECKS:
        return tail[-2]
    return "list" if tail[-1] == "virtualMachines" else None


def test_every_put_body_is_a_valid_sdk_model(azure):
    puts = [(r["path"], r["body"]) for r in azure.requests if r["method"] == "PUT"]
    assert {_kind(p) for p, _ in puts} == set(CHECKS), [p for p, _ in puts]
    errors = []
    for path, body in puts:
        errors += CHECKS[_kind(path)](body)
    for _path, body in puts:  # each rule on its own too (the NSG walk reaches them; this names them)
        for rule in (body.get("properties") or {}).get("securityRules") or []:
            errors += security_rule_errors(rule)
    assert not errors, errors


def test_every_answer_is_a_valid_sdk_model(azure):
    checked, errors = set(), []
    for _method, path, body in azure.responses:
        if not isinstance(body, dict) or "error" in body:
            continue
        kind = _kind(path)
        if kind == "list":
            for vm in body.get("value") or []:
                errors += vm_errors(vm)
        elif kind:
            errors += CHECKS[kind](body)
        else:
            continue
        checked.add(kind)
    assert checked == {*CHECKS, "list"}
    assert not errors, errors


def test_the_model_walk_catches_misspelled_fields_and_enum_values():
    good = {"location": "eastus", "properties": {"hardwareProfile": {"vmSize": "Standard_NC4as_T4_v3"},
                                                 "priority": "Spot", "evictionPolicy": "Delete",
                                                 "billingProfile": {"maxPrice": -1}}}
    assert not vm_errors(good)
    assert vm_errors({**good, "properties": {**good["properties"], "evictionPolicy": "Stop"}})
    assert vm_errors({**good, "properties": {**good["properties"], "priority": "Preemptible"}})
    assert vm_errors({**good, "properties": {**good["properties"], "hardwareProfile": {"vmsize": "x"}}})
    assert vm_errors({**good, "gpuCount": 1})
    pip = {"location": "eastus", "sku": {"name": "Standard", "tier": "Regional"},
           "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"}}
    assert not public_ip_errors(pip)
    assert public_ip_errors({**pip, "properties": {"allocationMethod": "Static"}})
    assert public_ip_errors({**pip, "sku": {"name": "Premium"}})
    rule = {"name": "ssh", "properties": {"protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22",
                                          "sourceAddressPrefix": "203.0.113.7/32", "destinationAddressPrefix": "*",
                                          "access": "Allow", "priority": 100, "direction": "Inbound"}}
    assert not security_rule_errors(rule) and not nsg_errors({"location": "eastus", "properties": {"securityRules": [rule]}})
    assert security_rule_errors({**rule, "properties": {**rule["properties"], "direction": "Ingress"}})
    assert security_rule_errors({**rule, "properties": {**rule["properties"], "destinationPort": "22"}})
    assert nsg_errors({"location": "eastus", "properties": {"rules": [rule]}})
    nic = {"location": "eastus", "properties": {"ipConfigurations": [
        {"name": "ipconfig1", "properties": {"subnet": {"id": "/s"}, "privateIPAllocationMethod": "Dynamic"}}]}}
    assert not nic_errors(nic)
    assert nic_errors({"location": "eastus", "properties": {"ipConfigurations": [
        {"name": "ipconfig1", "properties": {"subnetId": "/s"}}]}})


def test_the_standin_refuses_what_arm_refuses(azure):
    nic = next(r["body"] for r in azure.requests if r["method"] == "PUT" and "/networkInterfaces/" in r["path"])
    vm = next(r["body"] for r in azure.requests if r["method"] == "PUT" and "/virtualMachines/" in r["path"])
    answers = [
        azure._create_vm("nb2", {**vm, "properties": {**vm["properties"], "gpuCount": 1}}),
        azure._create_vm("nb3", {**vm, "properties": {**vm["properties"], "priority": "Preemptible"}}),
        azure._nic("PUT", "nic-x", {**nic, "properties": {"ipConfiguration": nic["properties"]["ipConfigurations"]}}),
    ]
    for answer in answers:
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidRequestContent", answer.text
    assert "nb2" not in azure.vms and "nic-x" not in azure.nics


def test_the_standin_refuses_what_arm_refuses_for_the_network(azure):
    """ARM's own answers, as reported from real subscriptions: a Standard address must be Static
    (MicrosoftDocs/azure-docs issue 42889), two rules may not share a priority in one direction
    (Azure/aks-engine issue 2106), an address still on a NIC cannot be deleted (ernestio/ernest issue 514)."""
    pip = next(r["body"] for r in azure.requests if r["method"] == "PUT" and "/publicIPAddresses/" in r["path"])
    nsg = next(r["body"] for r in azure.requests if r["method"] == "PUT" and "/networkSecurityGroups/" in r["path"])
    dynamic = azure._public_ip_resource("PUT", "pip-x", {**pip, "properties": {**pip["properties"],
                                                                              "publicIPAllocationMethod": "Dynamic"}})
    assert dynamic.status_code == 400 and dynamic.json()["error"]["code"] == "StandardSkuPublicIPAddressesMustBeStatic"
    rules = nsg["properties"]["securityRules"]
    assert len(rules) >= 2
    clash = [rules[0], {**rules[1], "properties": {**rules[1]["properties"], "priority": rules[0]["properties"]["priority"]}}]
    conflict = azure._nsg("PUT", "nsg-x", {**nsg, "properties": {"securityRules": clash}})
    assert conflict.status_code == 400 and conflict.json()["error"]["code"] == "SecurityRuleConflict"
    outbound = {**rules[1], "properties": {**clash[1]["properties"], "direction": "Outbound"}}
    assert azure._nsg("PUT", "nsg-y", {**nsg, "properties": {"securityRules": [rules[0], outbound]}}).status_code == 201
    typo = azure._nsg("PUT", "nsg-z", {**nsg, "properties": {"securityRules": [
        {**rules[0], "properties": {**rules[0]["properties"], "sourceAdressPrefix": "*"}}]}})
    assert typo.status_code == 400 and typo.json()["error"]["code"] == "InvalidRequestContent"
    attached = next(iter(azure.public_ips))  # the spot pod's address, still on its NIC
    in_use = azure._public_ip_resource("DELETE", attached, None)
    assert in_use.status_code == 400 and in_use.json()["error"]["code"] == "PublicIPAddressCannotBeDeleted"
    assert "pip-x" not in azure.public_ips and "nsg-x" not in azure.nsgs and "nsg-z" not in azure.nsgs

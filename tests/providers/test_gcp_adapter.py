"""GCP adapter against the stateful stand-in (tests/standins/gcp.py): in-process through
httpx.MockTransport, and served on 127.0.0.1 for the lifecycle tests that go through the app's
services (which build their own adapters from the account's settings)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from providers.adapters import gcp as gcp_module
from providers.adapters.base import (
    REMOTE_INTERRUPTED,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
    CapacityUnavailable,
    InvalidCredentials,
    LaunchRequest,
    NotFound,
    QuotaExceeded,
)
from providers.adapters.gcp import GcpAdapter, index_skus, signed_jwt
from providers.models import Offer, ProviderAccount
from providers.services import capacity_poll, provider_account_create
from tests.standins import gcp as standin
from workloads.lifecycle import services
from workloads.models import LaunchBlock, PodState

from ..factories import WorkloadFactory

BASE = "http://gcp.standin"
REGIONS = ["us-central1", "europe-west4"]


@pytest.fixture(autouse=True)
def _fresh_caches():
    gcp_module.clear_caches()
    yield
    gcp_module.clear_caches()


@pytest.fixture
def fake():
    return standin.FakeGcp()


@pytest.fixture
def served(fake):
    with fake.serve() as url:
        yield url


def adapter(fake, **settings) -> GcpAdapter:
    return GcpAdapter(standin.credentials(), {**standin.account_settings(BASE), "allowed_regions": REGIONS, **settings},
                      transport=fake.transport(), sleep=lambda s: None)


def gcp_account(tenant, url, **settings):
    return ProviderAccount.objects.create(tenant=tenant, kind="gcp", name="GCP", credentials=standin.credentials(),
                                          settings=standin.account_settings(url, **settings), allowed_regions=REGIONS)


class T4Inference(WorkloadFactory):
    """The workload these tests launch: the factory's, with this file's GPU."""

    name = "infer"
    image = "vllm/vllm-openai:v0.6.3"
    gpu_class = "T4"


def inserts(fake) -> list[tuple[dict, dict]]:
    return [(q, body) for method, path, q, body in fake.requests if method == "POST" and path.endswith("/instances")]


# --- auth ---------------------------------------------------------------------------------------


def test_token_from_a_signed_jwt_is_cached(fake):
    a = adapter(fake)
    a.verify()
    a.verify()
    adapter(fake).verify()  # a new adapter for the same key reuses the token
    token_posts = [r for r in fake.requests if r[1] == "/token"]
    assert len(token_posts) == 1
    assert len(fake.tokens) == 1


def test_jwt_claims():
    key = standin.service_account_key()
    jwt = signed_jwt(key, "https://oauth2.googleapis.com/token", now=1_800_000_000)
    header, claims, _ = jwt.split(".")
    claims = json.loads(standin._b64url_decode(claims))
    assert json.loads(standin._b64url_decode(header)) == {"alg": "RS256", "typ": "JWT", "kid": key["private_key_id"]}
    assert claims == {"iss": standin.SA_EMAIL, "scope": "https://www.googleapis.com/auth/cloud-platform",
                      "aud": "https://oauth2.googleapis.com/token", "iat": 1_800_000_000, "exp": 1_800_003_600}


def test_a_key_signed_by_another_private_key_is_refused(fake):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = GcpAdapter({"service_account_json": json.dumps(standin.service_account_key(key=other))},
                     standin.account_settings(BASE), transport=fake.transport())
    with pytest.raises(InvalidCredentials) as info:
        bad.verify()
    assert "Invalid JWT Signature" in info.value.message
    with pytest.raises(InvalidCredentials):
        GcpAdapter({"service_account_json": "{not json"}, standin.account_settings(BASE), transport=fake.transport()).verify()


def test_expired_token_is_refreshed_once(fake):
    a = adapter(fake)
    a.verify()
    fake.tokens.clear()  # Google revoked/expired it
    a.verify()
    assert len([r for r in fake.requests if r[1] == "/token"]) == 2


@pytest.mark.django_db
def test_invalid_credentials_are_refused_by_the_wizard_service(tenant, fake, served):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidCredentials):
        provider_account_create(tenant=tenant, kind="gcp", name="GCP",
                                credentials={"service_account_json": json.dumps(standin.service_account_key(key=other))},
                                settings=standin.account_settings(served))
    assert not ProviderAccount.objects.filter(kind="gcp").exists()
    account = provider_account_create(tenant=tenant, kind="gcp", name="GCP", credentials=standin.credentials(),
                                      settings=standin.account_settings(served))
    assert account.kind == "gcp"


# --- offers ---------------------------------------------------------------------------------------


def test_offers_are_normalized_and_priced_from_skus(fake):
    offers = adapter(fake).list_offers()
    assert {o.gpu_class for o in offers} == {"T4", "L4", "A100-40", "A100-80", "H100"}
    assert {o.region for o in offers} == {"us-central1", "europe-west4"}  # asia-northeast1 not allowed
    assert {o.country for o in offers} == {"US", "NL"}
    assert not [o for o in offers if "vws" in o.extra["accelerator"]]
    assert all(o.zone.startswith(o.region) and o.currency == "USD" for o in offers)

    def one(**kw):
        (o,) = [o for o in offers if all(getattr(o, k) == v for k, v in kw.items())]
        return o

    # GPU + the N1 VM around it: 0.35 + 4 x 0.031611 + 15 GiB x 0.004237
    t4 = one(zone="us-central1-a", instance_type="n1-standard-4+nvidia-tesla-t4", spot=False)
    assert t4.price_per_hour == Decimal("0.539999") and t4.extra["price_basis"] == "gpu+vm"
    t4_spot = one(zone="us-central1-a", instance_type="n1-standard-4+nvidia-tesla-t4", spot=True)
    assert t4_spot.price_per_hour == Decimal("0.180000")
    assert one(zone="us-central1-a", instance_type="n1-standard-16+nvidia-tesla-t4", spot=False).gpu_count == 4
    # built-in GPUs: 8 x 9.79655 + 208 x 0.029563 + 1872 GiB x 0.002519
    a3 = one(zone="us-central1-a", instance_type="a3-highgpu-8g", spot=False)
    assert (a3.gpu_class, a3.gpu_count, a3.gpu_memory_gb) == ("H100", 8, 80)
    assert a3.price_per_hour == Decimal("89.237072")
    assert one(zone="europe-west4-a", instance_type="a2-ultragpu-1g", spot=False).gpu_class == "A100-80"
    # no Spot SKU for A100 80GB in europe-west4: no spot offer rather than a guess
    assert not [o for o in offers if o.gpu_class == "A100-80" and o.spot]
    # aggregated lists were followed across pages
    pages = [q for m, p, q, _ in fake.requests if p.endswith("/aggregated/acceleratorTypes")]
    assert len(pages) >= 3 and "pageToken" in pages[-1]


def test_sku_index_ignores_commitments_and_matches_spot():
    skus = json.loads(standin.FakeGcp()._skus({}).content)["skus"]
    index = index_skus(skus)
    assert index[("gpu", "T4", "us-central1", "0")] == Decimal("0.35")  # not the 1-year commitment's 0.22
    assert index[("gpu", "T4", "us-central1", "1")] == Decimal("0.14")
    assert index[("core", "N1 Predefined", "europe-west4", "1")] == Decimal("0.00733")
    assert ("gpu", "A100-80", "europe-west4", "1") not in index


@pytest.mark.django_db
def test_capacity_poll_stores_gcp_offers(tenant, fake, served):
    account = gcp_account(tenant, served)
    (result,) = capacity_poll(accounts=[account])
    assert result.error == ""
    rows = Offer.objects.filter(provider_account=account)
    assert rows.filter(country="NL").exists() and rows.filter(spot=True).exists()
    assert rows.get(zone="us-central1-a", instance_type="n1-standard-4+nvidia-tesla-t4", spot=False).price_usd_per_hour == Decimal("0.539999")


# --- lifecycle through the app's services ---------------------------------------------------------------


@pytest.mark.django_db
def test_standard_launch_runs_and_terminates(tenant, project, owner, fake, served):
    account = gcp_account(tenant, served)
    capacity_poll(accounts=[account])
    w = T4Inference(tenant=tenant, project=project, owner=owner, ports=[{"port": 8000, "protocol": "http"}])
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.provider_account == account and not pod.spot
    assert pod.state == PodState.RUNNING
    assert pod.price_usd_per_hour == Decimal("0.539999") and pod.country == "US"
    ((query, body),) = inserts(fake)
    zone = pod.external_id.split("/")[0]
    assert query["requestId"] == GcpAdapter.request_id(str(pod.pk), zone, "n1-standard-4+nvidia-tesla-t4", False)
    assert body["labels"] == {"provisioner-pod": str(pod.pk)}
    assert body["guestAccelerators"] == [{"acceleratorType": f"zones/{zone}/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": 1}]
    assert body["scheduling"] == {"onHostMaintenance": "TERMINATE", "provisioningModel": "STANDARD", "automaticRestart": True}
    script = next(i["value"] for i in body["metadata"]["items"] if i["key"] == "startup-script")
    assert "vllm/vllm-openai:v0.6.3" in script and "8000:8000" in script
    assert pod.connection["host"].startswith("34.")

    pod = services.pod_terminate(pod_id=str(pod.pk))
    assert pod.state == PodState.TERMINATED
    assert pod.events.filter(message__contains="verified").exists()
    assert not fake.instances


@pytest.mark.django_db
def test_spot_launch_and_preemption(tenant, project, owner, fake, served):
    account = gcp_account(tenant, served)
    capacity_poll(accounts=[account])
    w = T4Inference(tenant=tenant, project=project, owner=owner, interruption_tolerant=True)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.spot and pod.price_usd_per_hour == Decimal("0.180000")
    ((_, body),) = inserts(fake)
    assert body["scheduling"] == {"onHostMaintenance": "TERMINATE", "provisioningModel": "SPOT",
                                  "automaticRestart": False, "instanceTerminationAction": "STOP"}
    assert pod.state == PodState.RUNNING
    zone, name = pod.external_id.split("/")
    fake.preempt(zone, name)
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.INTERRUPTED and pod.interruption_count == 1
    # the preempted VM's disk is not left billing: its deletion is under way
    assert ("DELETE", f"/compute/v1/projects/{standin.PROJECT}/zones/{zone}/instances/{name}") in [r[:2] for r in fake.requests]
    assert fake.instances[(zone, name)]["status"] == "STOPPING"


@pytest.mark.django_db
def test_zone_exhaustion_fails_over(tenant, project, owner, fake, served):
    account = gcp_account(tenant, served)
    capacity_poll(accounts=[account])
    fake.exhaust["us-central1-a"] = "ZONE_RESOURCE_POOL_EXHAUSTED"
    fake.exhaust["us-central1-b"] = "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
    w = T4Inference(tenant=tenant, project=project, owner=owner)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING
    assert pod.region == "europe-west4" and pod.country == "NL"
    assert LaunchBlock.objects.filter(provider_account=account, region="us-central1").exists()
    assert pod.events.filter(kind="attempt", message__contains="no capacity").exists()
    # each attempt had its own requestId, so no zone replayed another's failed operation
    ids = [q["requestId"] for q, _ in inserts(fake)]
    assert len(ids) >= 2 and len(set(ids)) == len(ids)


def test_capacity_and_quota_errors_are_typed(fake):
    req = dict(name="x", image="busybox", gpu_class="T4", gpu_count=1, region="us-central1", zone="us-central1-a",
               instance_type="n1-standard-4+nvidia-tesla-t4")
    a = adapter(fake)
    fake.exhaust["us-central1-a"] = "ZONE_RESOURCE_POOL_EXHAUSTED"
    with pytest.raises(CapacityUnavailable) as info:
        a.launch(LaunchRequest(tag="6a0e5d1c-0000-4000-8000-000000000001", **req))
    assert info.value.code == "ZONE_RESOURCE_POOL_EXHAUSTED" and info.value.failover
    fake.exhaust["us-central1-a"] = "QUOTA_EXCEEDED"
    with pytest.raises(QuotaExceeded) as info:
        a.launch(LaunchRequest(tag="6a0e5d1c-0000-4000-8000-000000000002", **req))
    assert "NVIDIA_T4_GPUS" in info.value.message


def test_rate_limit_is_retried(fake):
    a = adapter(fake)
    a.verify()
    fake.throttle(2)
    a.verify()
    assert [r for r in fake.exchanges if r[1].status_code == 429]


def test_slow_operation_is_polled_until_done(fake):
    fake.op_polls = 3
    pod = adapter(fake).launch(LaunchRequest(tag="7b1f6e2d-0000-4000-8000-000000000001", name="x", image="busybox",
                                             gpu_class="L4", gpu_count=1, region="us-central1", zone="us-central1-a",
                                             instance_type="g2-standard-4"))
    assert pod.state == REMOTE_RUNNING
    polls = [p for m, p, _, _ in fake.requests if "/operations/" in p]
    assert len(polls) == 3


def test_launch_is_idempotent_on_the_pod_tag(fake):
    req = LaunchRequest(tag="8c2a7f3e-0000-4000-8000-000000000001", name="x", image="busybox", gpu_class="L4",
                        gpu_count=1, region="us-central1", zone="us-central1-a", instance_type="g2-standard-4")
    first = adapter(fake).launch(req)
    second = adapter(fake).launch(req)  # same requestId: Google returns the same operation
    fake.request_ids.clear()
    third = adapter(fake).launch(req)  # requestId forgotten: the name conflicts (409) -> the same VM
    assert first.external_id == second.external_id == third.external_id
    assert len(fake.instances) == 1
    assert "guestAccelerators" not in inserts(fake)[0][1]  # G2 has its L4 built in


def test_list_pods_by_label_stop_start_and_not_found(fake):
    a = adapter(fake)
    pod = a.launch(LaunchRequest(tag="9d3b8a4f-0000-4000-8000-000000000001", name="x", image="busybox", gpu_class="T4",
                                 gpu_count=2, region="europe-west4", zone="europe-west4-b",
                                 instance_type="n1-standard-8+nvidia-tesla-t4"))
    fake.instances[("europe-west4-b", "not-ours")] = {**fake.instances[("europe-west4-b", pod.external_id.split("/")[1])],
                                                       "name": "not-ours", "labels": {}}
    pods = a.list_pods()
    assert [(p.external_id, p.tag) for p in pods] == [(pod.external_id, "9d3b8a4f-0000-4000-8000-000000000001")]
    a.stop(pod.external_id)
    assert a.get(pod.external_id).state == REMOTE_STOPPED  # stopped by us: not a preemption
    a.start(pod.external_id)
    assert a.get(pod.external_id).state == REMOTE_RUNNING
    a.terminate(pod.external_id)
    with pytest.raises(NotFound):
        a.get(pod.external_id)
    a.terminate(pod.external_id)  # already gone: silent


def test_preempted_spot_vm_reads_as_interrupted(fake):
    a = adapter(fake)
    pod = a.launch(LaunchRequest(tag="ae4c9b5a-0000-4000-8000-000000000001", name="x", image="busybox", gpu_class="T4",
                                 gpu_count=1, region="us-central1", zone="us-central1-b", spot=True,
                                 instance_type="n1-standard-4+nvidia-tesla-t4"))
    zone, name = pod.external_id.split("/")
    fake.preempt(zone, name)
    assert a.get(pod.external_id).state == REMOTE_INTERRUPTED


# --- issue 13 §2.1: a private image logs in to its own registry ------------------------------------


def test_startup_script_logs_in_to_the_image_registry(fake):
    from tests.providers.registry_login_helpers import PRIVATE_IMAGE, REGISTRY_AUTH, assert_logs_in_to_nvcr

    adapter(fake).launch(LaunchRequest(tag="8c2a7f3e-0000-4000-8000-0000000000aa", name="x", image=PRIVATE_IMAGE,
                                       gpu_class="L4", gpu_count=1, region="us-central1", zone="us-central1-a",
                                       instance_type="g2-standard-4", registry_auth=dict(REGISTRY_AUTH)))
    ((_, body),) = inserts(fake)
    assert_logs_in_to_nvcr(next(i["value"] for i in body["metadata"]["items"] if i["key"] == "startup-script"))

"""Lambda Cloud adapter against the Lambda stand-in: typed error codes, rate limits,
normalization, idempotent launch by tag, cloud-init container start, and the lifecycle."""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.adapters.base import (
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_TERMINATED,
    CapacityUnavailable,
    InvalidCredentials,
    LaunchRequest,
    NotFound,
    NotSupported,
    PermanentError,
    QuotaExceeded,
    TransientError,
)
from providers.adapters.http import RateLimiter, limiter_for, reset_limiters
from providers.adapters.lambda_cloud import LambdaAdapter, gpu_count_of
from providers.models import ProviderAccount
from providers.services import capacity_poll
from tests.standins.fixtures import STANDIN_CREDENTIALS, account_settings, no_sleep, served_lambda  # noqa: F401
from tests.standins.lambda_cloud import LambdaStandIn
from workloads.lifecycle import services
from workloads.models import PodState

TAG = "6a000000-0000-0000-0000-000000000001"


@pytest.fixture(autouse=True)
def _fresh_limiters():
    reset_limiters()
    yield
    reset_limiters()


@pytest.fixture
def standin():
    return LambdaStandIn()


@pytest.fixture
def waits():
    return []


@pytest.fixture
def adapter(standin, waits):
    return LambdaAdapter(dict(STANDIN_CREDENTIALS["lambda"]), {"account_id": "unit-lambda"},
                         transport=standin.transport(), sleep=waits.append)


def _req(offer, tag=TAG, **kw):
    return LaunchRequest(tag=tag, name="train", image="nvcr.io/nvidia/pytorch:24.08-py3", gpu_class=offer.gpu_class,
                         gpu_count=offer.gpu_count, region=offer.region, instance_type=offer.instance_type, **kw)


def _offer(adapter, instance_type="gpu_1x_a10", region="us-west-1"):
    return next(o for o in adapter.list_offers() if o.instance_type == instance_type and o.region == region)


def test_info():
    info = LambdaAdapter.info
    assert not info.supports_spot and not info.can_stop and info.currency == "USD"
    assert [f.name for f in info.credential_fields] == ["api_key", "ssh_key_name"]
    assert LambdaAdapter({}, {}).base_url == "https://cloud.lambda.ai"


def test_offers_normalize_count_class_region_and_cents(adapter):
    offers = adapter.list_offers()
    a100 = [o for o in offers if o.instance_type == "gpu_8x_a100_80gb_sxm4"]
    assert [(o.gpu_class, o.gpu_count, o.region, o.country, o.price_per_hour) for o in a100] == [
        ("A100-80", 8, "us-south-1", "US", Decimal("14.32"))]
    small = next(o for o in offers if o.instance_type == "gpu_1x_a100_sxm4" and o.region == "europe-central-1")
    assert (small.gpu_class, small.gpu_count, small.country, small.price_per_hour) == ("A100-40", 1, "DE", Decimal("1.29"))
    assert {o.gpu_class for o in offers} == {"A10", "A100-40", "A100-80", "H100"}
    assert not [o for o in offers if o.instance_type == "gpu_8x_h100_sxm5"]  # no region with capacity
    assert not any(o.spot for o in offers)
    assert gpu_count_of("gpu_8x_h100_sxm5") == 8 and gpu_count_of("odd", {"gpus": 2}) == 2


def test_availability_claims_no_more_than_the_api_says(adapter, standin):
    """Issue 13 defect 9: GET /api/v1/instance-types (lambda-cloud.openapi.json, InstanceTypesItem)
    only lists ``regions_with_capacity_available`` -- capacity for at least one instance, no level
    and no count. Every listed region was shown HIGH; it is LOW (some, count unknown) now."""
    offers = adapter.list_offers()
    assert offers and {o.availability for o in offers} == {"LOW"}
    assert {o.available for o in offers} == {None}
    standin.capacity["gpu_1x_a100_sxm4"] = ["us-east-1"]
    regions = {o.region for o in adapter.list_offers() if o.instance_type == "gpu_1x_a100_sxm4"}
    assert regions == {"us-east-1"}


def test_error_codes_map_to_typed_errors(adapter, standin):
    offer = _offer(adapter)
    with pytest.raises(InvalidCredentials):
        LambdaAdapter({"api_key": "bad"}, {}, transport=standin.transport(), sleep=lambda s: None).verify()
    standin.capacity["gpu_1x_a10"] = []
    with pytest.raises(CapacityUnavailable) as cap:
        adapter.launch(_req(offer))
    assert cap.value.code == "instance-operations/launch/insufficient-capacity"
    standin.capacity["gpu_1x_a10"] = ["us-west-1"]
    standin.instance_quota = 0
    with pytest.raises(QuotaExceeded) as quota:
        adapter.launch(_req(offer))
    assert quota.value.code == "global/quota-exceeded"
    standin.instance_quota = None
    with pytest.raises(NotFound):
        adapter.get("f" * 32)
    standin.fail_next("server_error", op="offers", times=9)
    with pytest.raises(TransientError) as upstream:
        adapter.list_offers()
    assert upstream.value.code == "provider/internal-unavailable"


def test_launch_needs_an_ssh_key_name(standin):
    a = LambdaAdapter({"api_key": "test-key"}, {}, transport=standin.transport(), sleep=lambda s: None)
    offer = _offer(a)
    with pytest.raises(PermanentError):
        a.launch(_req(offer))


def test_launch_tags_names_and_starts_the_container(adapter, standin):
    offer = _offer(adapter)
    pod = adapter.launch(_req(offer, env={"HF_TOKEN": "x y"}, ports=[{"port": 8000, "protocol": "http"}],
                              command=["python", "-m", "vllm"], args=["--port", "8000"]))
    assert pod.state == REMOTE_RUNNING and pod.tag == TAG and pod.price_per_hour == Decimal("0.75")
    raw = standin.instances[pod.external_id]
    assert raw["tags"] == [{"key": "provisioner-pod", "value": TAG}]
    assert raw["name"].endswith(TAG[:8]) and raw["ssh_key_names"] == ["default"]
    script = raw["_user_data"]
    assert "docker run -d --name workload --gpus all" in script and "'HF_TOKEN=x y'" in script
    assert "--entrypoint python nvcr.io/nvidia/pytorch:24.08-py3 -m vllm --port 8000" in script
    assert pod.connection["ssh"].startswith("ssh ubuntu@")


def test_launch_is_idempotent_by_tag_and_list_pods_is_ours_only(adapter, standin):
    offer = _offer(adapter)
    first = adapter.launch(_req(offer))
    assert adapter.launch(_req(offer)).external_id == first.external_id
    assert len(standin.instances) == 1
    standin.instances["x" * 32] = {**standin.instances[first.external_id], "id": "x" * 32, "tags": []}
    assert [p.external_id for p in adapter.list_pods()] == [first.external_id]


def test_timeout_after_launch_finds_the_instance_by_tag(adapter, standin):
    offer = _offer(adapter)
    standin.fail_next("timeout_after_create", op="launch")
    pod = adapter.launch(_req(offer))
    assert pod.tag == TAG and len(standin.instances) == 1


def test_rate_limits_are_kept_client_side(adapter, standin, waits):
    """1 request/s overall and 1 launch per 12 s: the second launch waits ~12 s."""
    offer = _offer(adapter)
    adapter.launch(_req(offer))
    adapter.launch(_req(offer, tag="6a000000-0000-0000-0000-000000000002"))
    assert any(w >= 11 for w in waits), waits  # the second launch waited for the 12 s bucket
    # every call after the first waited for the 1 req/s bucket (the fake sleep never refills it)
    assert len([w for w in waits if w > 0]) == len(standin.exchanges)
    standin.enforce_rate_limits = True
    real = LambdaAdapter(dict(STANDIN_CREDENTIALS["lambda"]), {"account_id": "other", "rate_limit": False},
                         transport=standin.transport(), sleep=lambda s: None)
    with pytest.raises(TransientError):  # without the client-side bucket the provider refuses
        real.launch(_req(offer, tag="6a000000-0000-0000-0000-000000000003"))


def test_token_bucket_is_thread_safe_and_paces_callers():
    clock = [0.0]
    limiter = RateLimiter(1.0, 1, clock=lambda: clock[0])
    assert [limiter.reserve() for _ in range(3)] == [0.0, 1.0, 2.0]
    clock[0] = 10.0
    assert limiter.reserve() == 0.0
    assert limiter_for(("lambda", "a", "launch"), 1 / 12, 1) is limiter_for(("lambda", "a", "launch"), 1 / 12, 1)
    import threading

    shared = RateLimiter(5.0, 1, clock=lambda: 0.0)  # frozen clock: waits depend on order only
    got: list[float] = []
    threads = [threading.Thread(target=lambda: got.append(shared.reserve())) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(round(w, 6) for w in got) == [round(i * 0.2, 6) for i in range(10)]


def test_states_and_termination(adapter, standin):
    standin.boot_seconds = 3600
    offer = _offer(adapter)
    pod = adapter.launch(_req(offer))
    assert pod.state == REMOTE_PROVISIONING
    adapter.terminate(pod.external_id)
    assert adapter.get(pod.external_id).state == REMOTE_TERMINATED
    adapter.terminate(pod.external_id)  # 404 from the provider: already gone, no error
    other = adapter.launch(_req(offer, tag="6a000000-0000-0000-0000-000000000002"))
    standin.preempt(other.external_id)
    assert adapter.get(other.external_id).state == REMOTE_INTERRUPTED
    with pytest.raises(NotSupported):
        adapter.stop(other.external_id)
    assert adapter.gpu_utilization(other.external_id) is None


@pytest.mark.django_db
def test_full_lifecycle_through_the_services(tenant, project, owner, served_lambda, no_sleep):  # noqa: F811
    account = ProviderAccount.objects.create(tenant=tenant, kind="lambda", name="Lambda (stand-in)",
                                             credentials=STANDIN_CREDENTIALS["lambda"], settings=account_settings(served_lambda))
    capacity_poll(accounts=[account])
    account.refresh_from_db()
    assert account.offers.filter(gpu_class="A10", region="us-east-1").exists()
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="infer", image="img:1",
                                 gpu_class="A10", gpu_count=1)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.provider_account_id == account.pk
    inst = served_lambda.standin.instances[pod.external_id]
    assert inst["tags"] == [{"key": "provisioner-pod", "value": str(pod.pk)}]
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING and pod.price_usd_per_hour == Decimal("0.750000")
    pod = services.pod_terminate(pod_id=str(pod.pk))
    assert pod.state == PodState.TERMINATED and inst["_state"] == "terminated"


# --- issue 13 §2.1: a private image logs in to its own registry ------------------------------------


def test_user_data_logs_in_to_the_image_registry(adapter, standin):
    from tests.providers.registry_login_helpers import REGISTRY_AUTH, assert_logs_in_to_nvcr

    pod = adapter.launch(_req(_offer(adapter), registry_auth=dict(REGISTRY_AUTH)))  # image: nvcr.io/nvidia/pytorch
    assert_logs_in_to_nvcr(standin.instances[pod.external_id]["_user_data"])

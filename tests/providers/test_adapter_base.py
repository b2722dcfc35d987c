"""The one HTTP adapter base (providers.adapters.rest): the same retry policy for every provider.

A stand-in answers 429 with Retry-After, or 503, before its real answer: every HTTP adapter
retries (honouring Retry-After) and then succeeds; a non-idempotent create is never retried
after a timeout unless its name/tag makes a repeat harmless.
"""

from __future__ import annotations

import httpx
import pytest
from django.test import override_settings

from providers.adapters.azure import AzureAdapter
from providers.adapters.base import LaunchRequest, LaunchTimeout, NotFound, TransientError
from providers.adapters.coreweave import CoreWeaveAdapter
from providers.adapters.http import reset_limiters
from providers.adapters.kubernetes import KubernetesAdapter
from providers.adapters.registry import adapter_class
from providers.adapters.rest import RestAdapter, TokenCache, base_url_override, tokens
from provisioner import clock
from tests.standins.azure import FakeAzure
from tests.standins.azure import account_settings as azure_settings
from tests.standins.azure import credentials as azure_credentials
from tests.standins.kubernetes import FakeKubernetes, kubeconfig

K8S_SETTINGS = {"region": "fra-dc1", "country": "DE", "namespace": "ml", "rate_card": {"A100-80": "1.60"},
                "launch_wait_seconds": 0, "poll_interval_seconds": 0}


class Flaky(httpx.BaseTransport):
    """Answers the first requests whose path contains ``match`` from a script, then the stand-in.

    A script entry is ``(status, {headers})`` or ``"timeout"`` (a read timeout after sending)."""

    def __init__(self, inner: httpx.BaseTransport, script: list, match: str = "", method: str = ""):
        self.inner, self.script, self.match, self.method = inner, list(script), match, method
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}")
        if self.script and self.match in request.url.path and self.method in ("", request.method):
            step = self.script.pop(0)
            if step == "timeout":
                self.inner.handle_request(request)  # the provider acted; the answer is lost
                raise httpx.ReadTimeout("read timed out", request=request)
            status, headers = step
            return httpx.Response(status, headers=headers, json={"message": "try later"})
        return self.inner.handle_request(request)


def cluster() -> FakeKubernetes:
    fk = FakeKubernetes()
    fk.add_node("gpu-a100-1", "NVIDIA-A100-SXM4-80GB", 8, memory_mib=81920)
    return fk


def kube(transport: httpx.BaseTransport, sleeps: list[float]) -> KubernetesAdapter:
    return KubernetesAdapter({"kubeconfig": kubeconfig("https://k8s.internal:6443")}, K8S_SETTINGS,
                             transport=transport, sleep=sleeps.append)


def coreweave(transport: httpx.BaseTransport, sleeps: list[float]) -> CoreWeaveAdapter:
    return CoreWeaveAdapter({"kubeconfig": kubeconfig("https://cks.coreweave.example")},
                            {"zone": "US-EAST-04A", "launch_wait_seconds": 0, "poll_interval_seconds": 0},
                            transport=transport, sleep=sleeps.append)


SCRIPTS = {
    "429 with Retry-After": ([(429, {"Retry-After": "4"})], [4.0]),
    "503 then 200": ([(503, {})], None),
}


@pytest.mark.parametrize("make", [kube, coreweave], ids=["kubernetes", "coreweave"])
@pytest.mark.parametrize("script", SCRIPTS, ids=list(SCRIPTS))
def test_kubernetes_family_retries_429_and_503_then_succeeds(make, script):
    answers, expected_sleeps = SCRIPTS[script]
    fk = cluster()
    fk.add_nodepool("h100-ondemand", "gd-8xh100ib-i128", target=1, max_nodes=2)
    sleeps: list[float] = []
    flaky = Flaky(fk.transport(), answers, match="/api/v1/nodes")
    offers = make(flaky, sleeps).list_offers()
    assert offers  # the retry got the real answer
    assert flaky.seen.count("GET /api/v1/nodes") == 2
    if expected_sleeps is not None:
        assert sleeps == expected_sleeps  # Retry-After, not a guess
    else:
        assert len(sleeps) == 1 and 0 < sleeps[0] <= 1.0  # backoff with jitter


@pytest.mark.parametrize("script", SCRIPTS, ids=list(SCRIPTS))
def test_azure_retries_429_and_503_then_succeeds(script):
    """Azure used to retry only a 401: a throttled or briefly unavailable ARM failed the poll."""
    answers, expected_sleeps = SCRIPTS[script]
    skus = "/providers/Microsoft.Compute/skus"

    def poll(script: list) -> tuple[Flaky, list, list[float]]:
        sleeps: list[float] = []
        tokens.clear()  # a fresh stand-in knows no earlier token
        flaky = Flaky(FakeAzure().transport(), script, match=skus)
        offers = AzureAdapter(azure_credentials(), azure_settings("https://azure.invalid"), transport=flaky,
                              sleep=sleeps.append).list_offers()
        return flaky, offers, sleeps

    clean, expected_offers, _ = poll([])
    flaky, offers, sleeps = poll(answers)
    assert offers == expected_offers  # the retry got the real answer
    assert sum(skus in seen for seen in flaky.seen) == sum(skus in seen for seen in clean.seen) + 1
    if expected_sleeps is not None:
        assert sleeps == expected_sleeps
    else:
        assert len(sleeps) == 1 and 0 < sleeps[0] <= 1.0


def test_kubernetes_create_after_a_timeout_is_retried_safely_by_name():
    """A pod create whose answer is lost is retried: the name comes from the tag, so the repeat
    answers AlreadyExists and the adapter returns the one pod (never two)."""
    fk = cluster()
    sleeps: list[float] = []
    flaky = Flaky(fk.transport(), ["timeout"], match="/namespaces/ml/pods", method="POST")
    adapter = kube(flaky, sleeps)
    request = LaunchRequest(tag="0f0e0d0c-0000-4000-8000-0000000000aa", name="nb", image="jupyter/base-notebook",
                            gpu_class="A100-80", gpu_count=1, region="fra-dc1", instance_type="NVIDIA-A100-SXM4-80GB")
    remote = adapter.launch(request)
    assert remote.tag == request.tag
    assert len(fk.pods()) == 1
    assert flaky.seen.count("POST /api/v1/namespaces/ml/pods") == 2 and len(sleeps) == 1


def test_a_non_idempotent_post_is_not_retried_after_a_timeout():
    """Without a name or idempotency key a timed-out create may have happened: surface
    LaunchTimeout (the caller reconciles by tag) instead of creating a second resource."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        raise httpx.ReadTimeout("slow", request=request)

    class Plain(RestAdapter):
        info = adapter_class("runpod").info
        default_base_url = "https://api.example"

        def verify(self): ...
        def list_offers(self): ...
        def launch(self, request): ...
        def get(self, external_id): ...
        def terminate(self, external_id): ...
        def list_pods(self): ...

    sleeps: list[float] = []
    adapter = Plain({"api_key": "k"}, {}, transport=httpx.MockTransport(handler), sleep=sleeps.append)
    with pytest.raises(LaunchTimeout):
        adapter.client.request("POST", "/pods", json={"name": "x"})
    assert calls == ["POST"] and sleeps == []
    calls.clear()
    with pytest.raises(TransientError):  # an idempotency key/name makes it retryable: retried, then transient
        adapter.client.request("POST", "/pods", json={"name": "x"}, idempotent=True)
    assert calls == ["POST"] * 4 and len(sleeps) == 3


def test_base_url_override_is_checked_in_one_place():
    settings = {"base_url": "http://127.0.0.1:9999"}
    with override_settings(PROVIDER_BASE_URL_OVERRIDE_ALLOWED=True):
        assert base_url_override(settings) == "http://127.0.0.1:9999"
        assert adapter_class("runpod")({"api_key": "k"}, settings).base_url == "http://127.0.0.1:9999"
    with override_settings(PROVIDER_BASE_URL_OVERRIDE_ALLOWED=False):
        assert base_url_override(settings) is None
        for kind in ("runpod", "vast", "lambda", "hetzner"):
            adapter = adapter_class(kind)({"api_key": "k"}, settings)
            assert adapter.base_url == adapter.default_base_url  # credentials never go to the override
        k8s = KubernetesAdapter({"kubeconfig": kubeconfig("https://k8s.internal:6443")}, settings)
        assert str(k8s.client._client.base_url).startswith("https://k8s.internal:6443")
        azure = AzureAdapter(azure_credentials(), settings)
        assert azure._base("management") == "https://management.azure.com"


def test_token_cache_reuses_until_shortly_before_expiry():
    cache, fetched = TokenCache(), []

    def fetch() -> tuple[str, float]:
        fetched.append(1)
        return f"t{len(fetched)}", 3600

    with clock.frozen() as advance:
        assert cache.get("k", fetch) == "t1"
        assert cache.get("k", fetch) == "t1"
        advance(seconds=3600 - 121)
        assert cache.get("k", fetch) == "t1"
        advance(seconds=2)  # inside the 120 s margin: replaced
        assert cache.get("k", fetch) == "t2"
        assert cache.get("k", fetch, refresh=True) == "t3"


def test_shared_helpers_opt_and_external_id():
    adapter = KubernetesAdapter({"kubeconfig": "x", "namespace": "from-wizard"}, {"namespace": ""})
    assert adapter.opt("namespace") == "from-wizard"
    assert adapter.split_external_id("us-east1-b/vm-1") == ("us-east1-b", "vm-1")
    with pytest.raises(NotFound):
        adapter.split_external_id("no-slash")


def test_aws_reads_the_same_retry_count_and_error_hook():
    from botocore.exceptions import ClientError

    from providers.adapters.aws import AwsAdapter
    from providers.adapters.base import QuotaExceeded

    creds = {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "secret"}
    attempts = [AwsAdapter(creds, settings)._client(service, "us-east-1").meta.config.retries["total_max_attempts"]
                for service, settings in (("ec2", {}), ("ec2", {"retries": 0}), ("pricing", {}))]
    assert attempts == [4, 1, 1]  # the first request + settings["retries"], like every HTTP adapter
    error = ClientError({"Error": {"Code": "VcpuLimitExceeded", "Message": "m"}}, "RunInstances")
    assert isinstance(AwsAdapter(creds, {}).error_mapper(error), QuotaExceeded)


def _every_http_adapter() -> dict:
    """kind -> (adapter factory taking transport and sleep, the stand-in's transport, the verify path)."""
    from providers.adapters.gcp import GcpAdapter
    from providers.adapters.hetzner import HetznerAdapter
    from providers.adapters.lambda_cloud import LambdaAdapter
    from providers.adapters.runpod import RunPodAdapter
    from providers.adapters.vast import VastAdapter
    from tests.standins import gcp as gcp_standin
    from tests.standins.fixtures import STANDIN_CREDENTIALS
    from tests.standins.hetzner import HetznerRobotStandIn
    from tests.standins.lambda_cloud import LambdaStandIn
    from tests.standins.runpod import RunPodStandIn
    from tests.standins.vast import VastStandIn

    fk = cluster()
    return {
        "runpod": (lambda t, s: RunPodAdapter(STANDIN_CREDENTIALS["runpod"], {}, transport=t, sleep=s),
                   RunPodStandIn().transport(), "/v2/pods"),
        "lambda": (lambda t, s: LambdaAdapter(STANDIN_CREDENTIALS["lambda"], {"rate_limit": False}, transport=t, sleep=s),
                   LambdaStandIn().transport(), "/api/v1/instances"),
        "vast": (lambda t, s: VastAdapter(STANDIN_CREDENTIALS["vast"], {}, transport=t, sleep=s),
                 VastStandIn().transport(), "/api/v1/instances"),
        "hetzner": (lambda t, s: HetznerAdapter(STANDIN_CREDENTIALS["hetzner"], {}, transport=t, sleep=s),
                    HetznerRobotStandIn().transport(), "/server"),
        "gcp": (lambda t, s: GcpAdapter(gcp_standin.credentials(), gcp_standin.account_settings("http://gcp.standin"),
                                        transport=t, sleep=s),
                gcp_standin.FakeGcp().transport(), "/compute/v1/projects/"),
        "azure": (lambda t, s: AzureAdapter(azure_credentials(), azure_settings("https://azure.invalid"), transport=t, sleep=s),
                  FakeAzure().transport(), "/subscriptions/"),
        "kubernetes": (lambda t, s: KubernetesAdapter({"kubeconfig": kubeconfig("https://k8s.internal:6443")}, K8S_SETTINGS,
                                                      transport=t, sleep=s), fk.transport(), "/version"),
        "coreweave": (lambda t, s: CoreWeaveAdapter({"kubeconfig": kubeconfig("https://k8s.internal:6443")}, K8S_SETTINGS,
                                                    transport=t, sleep=s), fk.transport(), "/version"),
    }


@pytest.mark.parametrize("kind", ["runpod", "lambda", "vast", "hetzner", "gcp", "azure", "kubernetes", "coreweave"])
def test_every_http_adapter_has_the_same_retry_policy(kind):
    """One policy for all eight: a 503 and then a 429 with Retry-After are retried (backoff, then the
    provider's delay), the third answer is served; four failures in a row surface as transient."""
    from providers.adapters.gcp import clear_caches

    clear_caches()
    tokens.clear()
    reset_limiters()  # client-side rate limits are process-wide: earlier tests must not add waits here
    make, transport, path = _every_http_adapter()[kind]
    sleeps: list[float] = []
    flaky = Flaky(transport, [(503, {}), (429, {"Retry-After": "2"})], match=path, method="GET")
    make(flaky, sleeps.append).verify()
    assert sum(path in seen and seen.startswith("GET") for seen in flaky.seen) >= 3
    assert len(sleeps) == 2 and 0 < sleeps[0] <= 1.0 and sleeps[1] == 2.0

    tokens.clear()
    sleeps.clear()
    down = Flaky(transport, [(503, {})] * 4, match=path, method="GET")
    with pytest.raises(TransientError) as caught:
        make(down, sleeps.append).verify()
    assert caught.value.status == 503 and len(sleeps) == 3

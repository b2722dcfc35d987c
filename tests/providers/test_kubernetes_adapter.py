"""On-prem Kubernetes adapter against the stateful API-server stand-in.

In-process (httpx.MockTransport) for adapter-level facts; served on 127.0.0.1 when the app's
own lifecycle services build the adapter from the account (kubeconfig server = the stand-in).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from decimal import Decimal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import connection

from providers.adapters import kubeconfig as kubeconfig_module
from providers.adapters.base import (
    REMOTE_EXITED,
    REMOTE_FAILED,
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    CapacityUnavailable,
    InvalidCredentials,
    LaunchRequest,
    NotFound,
    ProviderError,
    QuotaExceeded,
    TransientError,
)
from providers.adapters.kubeconfig import parse_kubeconfig
from providers.adapters.kubernetes import KubernetesAdapter
from providers.adapters.registry import provider_info
from providers.models import ProviderAccount
from providers.services import capacity_poll, provider_account_create
from provisioner import clock
from tests.standins.kubernetes import FakeKubernetes, kubeconfig
from workloads.lifecycle import services
from workloads.models import PodState

from ..factories import WorkloadFactory

SETTINGS = {"region": "fra-dc1", "country": "DE", "namespace": "ml", "rate_card": {"A100-80": "1.60", "H100": "2.40"},
            "launch_wait_seconds": 0, "poll_interval_seconds": 0}
TAG = "0f0e0d0c-0000-4000-8000-000000000001"


@pytest.fixture
def kube():
    fk = FakeKubernetes()
    fk.add_node("gpu-a100-1", "NVIDIA-A100-SXM4-80GB", 8, memory_mib=81920)
    fk.add_node("gpu-h100-1", "NVIDIA-H100-80GB-HBM3", 4, memory_mib=81559)
    fk.add_node("gpu-h100-2", "NVIDIA-H100-80GB-HBM3", 4, memory_mib=81559, ready=False)
    fk.add_node("cpu-1", gpus=0)
    return fk


def adapter(fk: FakeKubernetes, sleeps: list[float] | None = None, **settings) -> KubernetesAdapter:
    return KubernetesAdapter({"kubeconfig": kubeconfig("https://k8s.internal:6443")}, {**SETTINGS, **settings},
                             transport=fk.transport(), sleep=(sleeps if sleeps is not None else []).append)


def request(**kw) -> LaunchRequest:
    base = dict(tag=TAG, name="train-0f0e", image="nvcr.io/nvidia/pytorch:24.08-py3", gpu_class="H100", gpu_count=2,
                region="fra-dc1", instance_type="NVIDIA-H100-80GB-HBM3", ports=[{"port": 8888, "protocol": "http"}],
                volumes=[{"kind": "persistent", "size_gb": 20, "mount_path": "/data"}], env={"EPOCHS": "3"},
                command=["python"], args=["train.py"])
    base.update(kw)
    return LaunchRequest(**base)


# --- kubeconfig -------------------------------------------------------------------------------


def test_kubeconfig_token_and_client_certificate():
    cfg = parse_kubeconfig(kubeconfig("https://k8s:6443", token="abc", namespace="team"))
    assert (cfg.server, cfg.token, cfg.namespace, cfg.auth_kind) == ("https://k8s:6443", "abc", "team", "token")
    cfg = parse_kubeconfig(kubeconfig("https://k8s:6443", cert_pem="CERT", key_pem="KEY", ca_pem="CA"))
    assert (cfg.client_cert_pem, cfg.client_key_pem, cfg.ca_pem, cfg.auth_kind) == ("CERT", "KEY", "CA", "client-certificate")


@pytest.mark.parametrize("text, message", [
    ("", "upload"),
    ("clusters: [unclosed", "not valid YAML"),
    ("apiVersion: v1\nkind: Config\n", "not a kubeconfig"),
    ("clusters: [{name: c, cluster: {server: 'https://k', certificate-authority: /home/me/ca.crt}}]\n"
     "contexts: [{name: x, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n", "refers to a file"),
    ("clusters: [{name: c, cluster: {server: 'https://k'}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
     "users: [{name: u, user: {exec: {command: aws}}}]\n", "exec/auth-provider"),
    ("clusters: [{name: c, cluster: {server: 'https://k'}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
     "users: [{name: u, user: {}}]\n", "neither a token"),
])
def test_unusable_kubeconfigs_are_refused_with_a_reason(text, message):
    with pytest.raises(InvalidCredentials, match=message):
        parse_kubeconfig(text)


def test_wizard_asks_for_an_uploaded_kubeconfig():
    fields = {f.name: f for f in provider_info("kubernetes").credential_fields}
    assert fields["kubeconfig"].file and fields["kubeconfig"].secret
    # the cluster's location and internal rates are plain, optional fields
    assert not any(f.secret or f.required for name, f in fields.items() if name != "kubeconfig")


@pytest.mark.django_db(transaction=True)
def test_wizard_form_uploads_and_verifies_the_kubeconfig(tenant, kube, served):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from providers.forms import CredentialsForm

    upload = SimpleUploadedFile("kubeconfig.yaml", kubeconfig(served).encode(), content_type="application/yaml")
    form = CredentialsForm({"name": "Lab cluster", "country": "DE", "rate_card": "H100=2.40\nA100-80=1.60", "namespace": "ml"},
                           {"kubeconfig": upload}, info=provider_info("kubernetes"), tenant=tenant)
    assert form.is_valid(), form.errors
    assert form.credentials["kubeconfig"].startswith("apiVersion: v1")
    # what the wizard stores is enough for offers priced from the rate card, in the admin's country
    offers = KubernetesAdapter(form.credentials, {}).list_offers()
    h100 = next(o for o in offers if o.gpu_class == "H100" and o.gpu_count == 1)
    assert (h100.country, h100.price_per_hour) == ("DE", Decimal("2.40"))
    bad = CredentialsForm({"name": "Bad"}, {"kubeconfig": SimpleUploadedFile("k.yaml", kubeconfig(served, token="x").encode())},
                          info=provider_info("kubernetes"), tenant=tenant)
    assert not bad.is_valid() and "refused" in str(bad.errors)


# --- offers -----------------------------------------------------------------------------------


def test_offers_are_allocatable_gpus_minus_requested_grouped_by_product(kube):
    # a foreign pod holds 3 of the A100 node's 8 GPUs; a finished one holds nothing
    a = adapter(kube)
    a.launch(request(tag="aaaaaaaa-0000-4000-8000-000000000001", gpu_class="A100-80", gpu_count=3,
                     instance_type="NVIDIA-A100-SXM4-80GB", ports=[], volumes=[]))
    done = a.launch(request(tag="aaaaaaaa-0000-4000-8000-000000000002", gpu_class="A100-80", gpu_count=1,
                            instance_type="NVIDIA-A100-SXM4-80GB", ports=[], volumes=[]))
    kube.finish(done.external_id, "ml")
    offers = {(o.gpu_class, o.gpu_count): o for o in a.list_offers()}
    assert set(offers) == {("A100-80", 1), ("A100-80", 2), ("A100-80", 4), ("A100-80", 8),
                           ("H100", 1), ("H100", 2), ("H100", 4)}
    assert offers[("A100-80", 1)].available == 5 and offers[("A100-80", 4)].available == 1
    assert offers[("A100-80", 8)].available == 0  # exists, but full now
    assert offers[("H100", 4)].available == 1  # the NotReady H100 node does not count
    o = offers[("H100", 2)]
    assert (o.region, o.country, o.currency, o.spot) == ("fra-dc1", "DE", "USD", False)
    assert o.price_per_hour == Decimal("4.80") and o.instance_type == "NVIDIA-H100-80GB-HBM3"
    assert o.gpu_memory_gb == 80 and "persistent" in o.supports_volumes


def test_nodes_tainted_for_others_are_not_offered_unless_tolerated():
    fk = FakeKubernetes()
    node = fk.add_node("team-a-1", "NVIDIA-L40S", 4, memory_mib=46068)
    node["spec"]["taints"].append({"key": "dedicated", "value": "team-a", "effect": "NoSchedule"})
    assert {o.available for o in adapter(fk).list_offers()} == {0}
    a = adapter(fk, tolerate_taints="dedicated")
    assert max(o.available for o in a.list_offers()) == 4
    remote = a.launch(request(gpu_class="L40S", gpu_count=1, instance_type="NVIDIA-L40S", ports=[], volumes=[]))
    assert {"key": "dedicated", "operator": "Exists"} in fk.pod(remote.external_id, "ml")["spec"]["tolerations"]


def test_region_from_topology_labels_and_missing_rates_flagged():
    fk = FakeKubernetes()
    fk.add_node("n1", "NVIDIA-L40S", 2, memory_mib=46068, region="eu-west-1")
    offers = adapter(fk, region="", country="", rate_card={}).list_offers()
    assert {(o.gpu_class, o.region, o.country) for o in offers} == {("L40S", "eu-west-1", "IE")}
    assert all(o.price_per_hour == 0 and o.extra["rate_card_missing"] for o in offers)


# --- launch, state, terminate -------------------------------------------------------------------


def test_launch_creates_gpu_pod_pvc_and_service_idempotently(kube):
    a = adapter(kube)
    remote = a.launch(request())
    assert remote.state == REMOTE_RUNNING and remote.tag == TAG
    pod = kube.pod(remote.external_id, "ml")
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    assert pod["metadata"]["labels"]["provisioner.io/pod"] == TAG
    assert container["command"] == ["python"] and container["args"] == ["train.py"]
    assert container["env"] == [{"name": "EPOCHS", "value": "3"}]
    claim = pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert kube.objects[("persistentvolumeclaims", "ml", claim)]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    svc = kube.objects[("services", "ml", remote.external_id)]
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["selector"] == {"provisioner.io/pod": TAG}
    node_port = svc["spec"]["ports"][0]["nodePort"]
    assert remote.connection["urls"]["8888"].endswith(f":{node_port}")
    # a retried launch finds the pod instead of creating a second one
    again = a.launch(request())
    assert again.external_id == remote.external_id
    assert sum(1 for r in kube.requests if r["method"] == "POST" and r["path"].endswith("/pods")) == 1
    assert [p.tag for p in a.list_pods()] == [TAG]


def test_terminate_removes_pod_service_and_owned_volumes(kube):
    a = adapter(kube)
    remote = a.launch(request(volumes=[{"kind": "persistent", "size_gb": 5, "mount_path": "/scratch"},
                                       {"kind": "persistent", "size_gb": 50, "mount_path": "/data", "name": "team-data"}]))
    a.terminate(remote.external_id)
    kinds = {(k, n) for k, _, n in kube.objects}
    assert ("persistentvolumeclaims", "team-data") in kinds  # a named volume outlives the pod
    assert not {k for k, _ in kinds} & {"pods", "services"} and len(kinds) == 1
    with pytest.raises(NotFound):
        a.get(remote.external_id)
    a.terminate(remote.external_id)  # already gone: silent


def test_unschedulable_is_a_capacity_error_and_leaves_nothing(kube):
    a = adapter(kube)
    with pytest.raises(CapacityUnavailable, match="Insufficient nvidia.com/gpu"):
        a.launch(request(gpu_count=8))  # no H100 node has 8 GPUs
    assert not kube.pods() and not [k for k in kube.objects if k[0] == "services"]


def test_pending_unschedulable_pod_fails_after_grace_and_is_deleted(kube):
    a = adapter(kube, unschedulable_grace_seconds=60)
    with clock.frozen() as advance:
        kube.add_node("gpu-h100-3", "NVIDIA-H100-80GB-HBM3", 4, memory_mib=81559)
        remote = a.launch(request(tag="bbbbbbbb-0000-4000-8000-000000000001", gpu_count=4, ports=[], volumes=[]))
        blocker = a.launch(request(tag="bbbbbbbb-0000-4000-8000-000000000002", gpu_count=4, ports=[], volumes=[]))
        assert blocker.state == REMOTE_RUNNING
        # a third one cannot be placed; it stays Pending while within the grace period
        a2 = adapter(kube, unschedulable_grace_seconds=60)
        a2.unschedulable_is_final = lambda pod: True
        pending = kube._create("pods", "ml", a2.pod_manifest(request(tag="bbbbbbbb-0000-4000-8000-000000000003",
                                                                        gpu_count=4, ports=[], volumes=[]))[0])
        name = pending.json()["metadata"]["name"]
        assert a.get(name).state == REMOTE_PROVISIONING
        advance(seconds=61)
        got = a.get(name)
        assert got.state == REMOTE_FAILED and "Unschedulable" in got.message
        assert kube.pod(name, "ml") is None  # it cannot start later unaccounted for
    assert remote.state == REMOTE_RUNNING


def test_image_that_cannot_be_pulled_fails_after_grace(kube):
    kube.bad_images.add("nvcr.io/nvidia/typo:1")
    a = adapter(kube, image_pull_grace_seconds=120)
    with clock.frozen() as advance:
        remote = a.launch(request(image="nvcr.io/nvidia/typo:1"))
        got = a.get(remote.external_id)
        assert got.state == REMOTE_PROVISIONING and got.message.startswith("ErrImagePull")
        advance(seconds=121)
        got = a.get(remote.external_id)
        assert got.state == REMOTE_FAILED and "not found" in got.message
    assert kube.pod(remote.external_id, "ml") is None  # its GPUs are free again


def test_disruption_target_is_an_interruption(kube):
    a = adapter(kube)
    remote = a.launch(request())
    kube.disrupt(remote.external_id, "ml", reason="PreemptionByScheduler")
    got = a.get(remote.external_id)
    assert got.state == REMOTE_INTERRUPTED and "PreemptionByScheduler" in got.message


def test_graceful_disruption_is_a_notice_until_the_grace_period_ends(kube):
    a = adapter(kube)
    with clock.frozen() as advance:
        remote = a.launch(request())
        assert a.get(remote.external_id).state == REMOTE_RUNNING
        kube.disrupt(remote.external_id, "ml", reason="DeletionByTaintManager", message="spot node reclaimed",
                     grace_seconds=30)
        got = a.get(remote.external_id)
        assert got.state == REMOTE_RUNNING and "DeletionByTaintManager" in got.message
        assert got.notice.deadline == clock.now().replace(microsecond=0) + dt.timedelta(seconds=30)
        assert got.notice.kind == "preempt" and got.notice.source == "pod condition DisruptionTarget"
        assert [p for p in a.list_pods() if p.external_id == remote.external_id][0].notice is not None
        advance(seconds=31)
        got = a.get(remote.external_id)
        assert got.state == REMOTE_INTERRUPTED and got.notice is None


def test_eviction_that_deleted_the_pod_is_found_in_events(kube):
    a = adapter(kube)
    remote = a.launch(request())
    kube.disrupt(remote.external_id, "ml", reason="EvictionByEvictionAPI", message="Eviction API: evicting", delete=True)
    assert a.get(remote.external_id).state == REMOTE_INTERRUPTED


def test_succeeded_and_failed_containers_report_exit_codes(kube):
    a = adapter(kube)
    ok = a.launch(request(ports=[], volumes=[]))
    kube.finish(ok.external_id, "ml", exit_code=0)
    assert (a.get(ok.external_id).state, a.get(ok.external_id).exit_code) == (REMOTE_EXITED, 0)
    bad = a.launch(request(tag="cccccccc-0000-4000-8000-000000000001", ports=[], volumes=[]))
    kube.finish(bad.external_id, "ml", exit_code=3)
    assert (a.get(bad.external_id).state, a.get(bad.external_id).exit_code) == (REMOTE_EXITED, 3)


# --- errors -------------------------------------------------------------------------------------


def test_status_errors_are_typed(kube):
    sleeps: list[float] = []
    a = adapter(kube, sleeps)
    kube.throttle(times=4, retry_after=7)  # more 429s than the shared policy's 3 retries
    with pytest.raises(TransientError) as exc:
        a.list_offers()
    assert exc.value.retry_after == 7 and exc.value.status == 429
    assert sleeps == [7, 7, 7]  # Retry-After honoured before each retry
    kube.gpu_quota["ml"] = 1
    with pytest.raises(QuotaExceeded, match="exceeded quota"):
        a.launch(request())
    wrong = KubernetesAdapter({"kubeconfig": kubeconfig("https://k8s:6443", token="nope")}, SETTINGS, transport=kube.transport())
    with pytest.raises(InvalidCredentials):
        wrong.verify()


# --- utilization -----------------------------------------------------------------------------------


def test_gpu_utilization_from_prometheus_dcgm(kube):
    assert adapter(kube).gpu_utilization("anything") is None  # no Prometheus configured
    a = adapter(kube, prometheus_url="http://prometheus.monitoring:9090/prom")
    remote = a.launch(request())
    kube.util[remote.external_id] = 42.5
    samples = a.gpu_utilization(remote.external_id)
    assert [(s.gpu_index, s.util_pct) for s in samples] == [(0, 42.5), (1, 42.5)]
    query = next(r for r in kube.requests if r["path"] == "/prom/api/v1/query")
    assert query["method"] == "GET"


def test_gpu_utilization_with_exported_labels_honor_labels_false(kube):
    """Issue 13 defect 6: with Prometheus' default ``honor_labels: false`` (Prometheus docs,
    Configuration, <scrape_config>, honor_labels) the exporter's own ``pod``/``namespace`` labels
    clash with the scrape target's and are renamed ``exported_pod``/``exported_namespace``; the
    target's (the dcgm-exporter pod in gpu-operator) take their place. Both shapes must match."""
    a = adapter(kube, prometheus_url="http://prometheus.monitoring:9090/prom")
    remote = a.launch(request())
    other = a.launch(request(tag="0e0e0000-0000-0000-0000-0000000000aa", name="other-0e0e"))
    kube.util[remote.external_id] = 3.0
    kube.util[other.external_id] = 99.0
    kube.dcgm_honor_labels = False
    samples = a.gpu_utilization(remote.external_id)
    assert [(s.gpu_index, s.util_pct) for s in samples] == [(0, 3.0), (1, 3.0)]
    kube.dcgm_honor_labels = True
    assert [s.util_pct for s in a.gpu_utilization(remote.external_id)] == [3.0, 3.0]


# --- through the app's lifecycle services (stand-in served on 127.0.0.1) ----------------------------


@pytest.fixture
def served(kube):
    with kube.serve() as url:
        yield url


@pytest.fixture
def k8s_account(tenant, served):
    acct = provider_account_create(tenant=tenant, kind="kubernetes", name="On-prem FRA",
                                   credentials={"kubeconfig": kubeconfig(served)}, settings=dict(SETTINGS))
    capacity_poll(accounts=[acct])
    acct.refresh_from_db()
    return acct


class H100x2(WorkloadFactory):
    """The workload these tests launch: the factory's, with this file's GPU."""

    gpu_class = "H100"
    gpu_count = 2


@pytest.mark.django_db(transaction=True)
def test_lifecycle_launch_running_terminate(tenant, project, owner, kube, k8s_account):
    assert k8s_account.health == "ok" and k8s_account.offers.filter(gpu_class="H100", country="DE").exists()
    (pod,) = services.workload_launch(workload=H100x2(tenant=tenant, project=project, owner=owner), enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING and pod.provider_account == k8s_account
    assert pod.price_usd_per_hour == Decimal("4.80") and pod.country == "DE"
    assert kube.pod(pod.external_id, "ml")["metadata"]["labels"]["provisioner.io/pod"] == str(pod.pk)
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING
    pod = services.pod_terminate(pod_id=str(pod.pk))
    assert pod.state == PodState.TERMINATED
    assert kube.pod(pod.external_id, "ml") is None


@pytest.mark.django_db(transaction=True)
def test_lifecycle_capacity_error_is_recognized(tenant, project, owner, kube, k8s_account):
    # the offers said 1x4 H100 was free; meanwhile someone else took the node
    kube.add_node("other", "NVIDIA-T4", 1, memory_mib=15360)
    other = KubernetesAdapter({"kubeconfig": kubeconfig("https://x")}, SETTINGS, transport=kube.transport())
    other.launch(request(tag="dddddddd-0000-4000-8000-000000000001", gpu_count=4, ports=[], volumes=[]))
    (pod,) = services.workload_launch(workload=H100x2(tenant=tenant, project=project, owner=owner, gpu_count=4), enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.FAILED
    attempt = pod.events.filter(kind="attempt").first()
    assert attempt is not None and "no capacity" in attempt.message.lower()


@pytest.mark.django_db(transaction=True)
def test_lifecycle_interruption_detected(tenant, project, owner, kube, k8s_account):
    (pod,) = services.workload_launch(workload=H100x2(tenant=tenant, project=project, owner=owner), enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    kube.disrupt(pod.external_id, "ml", reason="DeletionByTaintManager", message="node drained", delete=True)
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.INTERRUPTED


@pytest.mark.django_db(transaction=True)
def test_kubeconfig_secrets_only_inside_encrypted_credentials(tenant, k8s_account):
    token = "k8s-SUPERSECRET-serviceaccount-token-123456"
    acct = provider_account_create(tenant=tenant, kind="kubernetes", name="Secret cluster", verify=False,
                                   credentials={"kubeconfig": kubeconfig("https://k8s:6443", token=token)},
                                   settings=dict(SETTINGS))
    with connection.cursor() as cur:
        cur.execute("SELECT credentials, settings FROM providers_provideraccount WHERE id = %s",
                    [acct.pk.hex if connection.vendor == "sqlite" else acct.pk])
        raw_credentials, raw_settings = cur.fetchone()
    assert token.encode() not in bytes(raw_credentials) and b"kubeconfig" not in bytes(raw_credentials)
    assert token not in str(raw_settings)
    assert token in ProviderAccount.objects.get(pk=acct.pk).credentials["kubeconfig"]


# --- client certificates over TLS -----------------------------------------------------------------


def _cert(subject: str, issuer_key, issuer_name, key, *, ca: bool = False, san_ip: str | None = None):
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san_ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def test_client_certificate_auth_over_tls_and_key_files_are_removed(kube, monkeypatch):
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in CA")])
    ca = _cert("stand-in CA", ca_key, ca_name, ca_key, ca=True)
    server = _cert("kube-apiserver", ca_key, ca_name, server_key, san_ip="127.0.0.1")
    client = _cert("provisioner", ca_key, ca_name, client_key)
    with tempfile.TemporaryDirectory() as d:
        for name, data in (("ca.pem", _pem(ca)), ("server.pem", _pem(server)), ("server.key", _pem(server_key))):
            with open(os.path.join(d, name), "w") as fh:
                fh.write(data)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
        tls.load_verify_locations(os.path.join(d, "ca.pem"))
        tls.verify_mode = ssl.CERT_OPTIONAL  # as kube-apiserver: a certificate is one way to authenticate
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(kubeconfig_module.tempfile, "mkdtemp", lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1])
    kube.client_cert_cn = "provisioner"
    with kube.serve(tls=tls) as url:
        cfg = kubeconfig(url, ca_pem=_pem(ca), cert_pem=_pem(client), key_pem=_pem(client_key))
        a = KubernetesAdapter({"kubeconfig": cfg}, SETTINGS)
        a.verify()
        assert {o.gpu_class for o in a.list_offers()} == {"A100-80", "H100"}
        # without the client certificate the same server refuses us (no token either)
        bare = kubeconfig(url, ca_pem=_pem(ca), token="wrong")
        with pytest.raises(InvalidCredentials):
            KubernetesAdapter({"kubeconfig": bare}, SETTINGS).verify()
    assert made and not any(os.path.exists(p) for p in made)  # key material never outlives the client


# --- issue 13 §2.1: a private image logs in to its own registry ------------------------------------


def test_pull_secret_is_keyed_by_the_image_registry_and_used_by_the_pod(kube):
    import base64
    import json

    from tests.providers.registry_login_helpers import PRIVATE_IMAGE, REGISTRY_AUTH

    remote = adapter(kube).launch(request(image=PRIVATE_IMAGE, registry_auth={**REGISTRY_AUTH, "registry": "NVCR.IO"}))
    pod = kube.pod(remote.external_id, "ml")
    (ref,) = pod["spec"]["imagePullSecrets"]
    secret = kube.objects[("secrets", "ml", ref["name"])]
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert list(config["auths"]) == ["nvcr.io"]
    entry = config["auths"]["nvcr.io"]
    assert base64.b64decode(entry["auth"]).decode() == "$oauthtoken:nvapi-s3cr3t-key"


def test_logs_read_the_pod_log_endpoint_as_text_with_tail_and_timestamps(kube):
    """Kubernetes API reference, "Pod v1" → read log: GET .../pods/{name}/log?tailLines=N&timestamps=true."""
    a = adapter(kube)
    remote = a.launch(request())
    kube.pod_logs[remote.external_id] = [f"epoch {i}" for i in range(1, 6)]
    text = a.logs(remote.external_id, 2)
    assert text.splitlines() == ["2026-11-27T10:00:00.000000000Z epoch 4", "2026-11-27T10:00:01.000000000Z epoch 5"]
    call = kube.requests[-1]
    assert call["method"] == "GET" and call["path"] == f"/api/v1/namespaces/ml/pods/{remote.external_id}/log"
    assert call["query"] == {"tailLines": "2", "timestamps": "true"}
    with pytest.raises(NotFound):
        a.logs("train-gone", 200)
    kube.pod(remote.external_id, "ml")["status"]["phase"] = "Pending"  # the container waits to start
    with pytest.raises(ProviderError, match="waiting to start"):
        a.logs(remote.external_id, 200)

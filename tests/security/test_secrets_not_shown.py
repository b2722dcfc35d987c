"""Issue 16 §5: secrets are never shown back — not in stored error texts, not in the Sandbox's
copy of the launch request."""

from __future__ import annotations

import pytest
from django.urls import reverse

from providers.adapters.base import InvalidCredentials
from providers.models import ProviderAccount, SandboxInstance
from providers.services import PollResult, capacity_store
from provisioner.logfilter import scrub_stored_error
from workloads.lifecycle.transitions import pod_event
from workloads.models import Pod, PodEvent
from workloads.recipes.services import tenant_secret_create

API_KEY = "rp-Zq8wX3vN1mK7pL2sT9yB"  # what the tenant pasted; the provider error echoes it


@pytest.mark.django_db
def test_provider_error_echoing_the_key_is_scrubbed_before_saving(client, tenant, owner, viewer):
    account = ProviderAccount.objects.create(tenant=tenant, kind="runpod", name="RunPod", credentials={"api_key": API_KEY})
    error = f"InvalidCredentials: 401 {{'error': 'invalid api key {API_KEY}', 'hint': 'Bearer {API_KEY}'}}"
    capacity_store(account=account, result=PollResult(str(account.pk), None, error))
    stored = ProviderAccount.objects.get(pk=account.pk).last_error
    assert API_KEY not in stored and "InvalidCredentials: 401" in stored
    client.force_login(viewer)
    for url in (reverse("providers:list"), reverse("providers:detail", args=[account.pk])):
        page = client.get(url)
        assert page.status_code == 200 and API_KEY not in page.content.decode()


@pytest.mark.parametrize("token", [
    "sk-proj-AbCdEf0123456789AbCdEf",
    "hf_AbCdEfGhIjKlMnOpQrStUvWx",
    "nvapi-AbCdEfGhIjKlMnOpQrSt-1234",
    "AKIAABCDEFGHIJKLMNOP",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl",
    "Xk29fLq81ZpVb7TnWc03RsYe5UgHj6Md",  # a random 32-character base62 key nobody registered
])
def test_token_looking_strings_are_scrubbed(token):
    assert token not in scrub_stored_error(f"provider said: bad credential {token}.")


@pytest.mark.parametrize("text", [
    "pod 3f2b8c1e-1234-4abc-9def-0123456789ab replaced by 0f8c0000-0000-0000-0000-000000000001",
    "image nvcr.io/nvidia/pytorch:24.08-py3 pulled; digest sha256:" + "ab12" * 16,
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/Provisioner/providers/Microsoft.Compute",
    "no capacity (H100 in us-east-1)",
])
def test_ids_and_plain_words_survive(text):
    assert scrub_stored_error(text) == text


@pytest.mark.django_db
def test_pod_event_and_reason_do_not_keep_a_registered_secret(tenant, project, owner, sandbox):
    from provisioner.logfilter import register_secret
    from tests.workloads.telemetry_helpers import running_pod

    pod = running_pod(tenant, project, owner)
    register_secret("Registered-Secret-Value-42")
    pod_event(pod, "attempt", "launch error (echo: Registered-Secret-Value-42)", error="Registered-Secret-Value-42")
    event = PodEvent.objects.filter(pod=pod).latest("at")
    assert "Registered-Secret-Value-42" not in event.message and "Registered-Secret-Value-42" not in str(event.data)


@pytest.mark.django_db
def test_sandbox_keeps_the_secret_reference_not_the_value(tenant, project, developer, sandbox,
                                                          django_capture_on_commit_callbacks):
    from workloads.recipes.services import builtin_catalog_install

    builtin_catalog_install()
    secret = tenant_secret_create(tenant=tenant, user=developer, name="hf", value="hf_TopSecretValue0123456789")
    from django.test import Client

    client = Client()
    client.force_login(developer)
    data = {"name": "chat", "project": str(project.pk), "p_model": "meta-llama/Llama-3.1-8B-Instruct",
            "p_max_context": "8192", "p_gpu_memory_utilization": "0.9", "p_hf_token": f"secret:{secret.pk}",
            "gpu_class": "L4", "gpu_count": "1", "lifecycle": "service", "replicas": "1",
            "overlap_policy": "skip", "networking": "public", "ports": "8000/http", "volumes": ""}
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(reverse("workloads:recipe_launch", kwargs={"slug": "llm-inference"}), data)
    assert r.status_code == 302, r.content.decode()[-2000:]
    assert Pod.objects.filter(state="running").exists()
    inst = SandboxInstance.objects.get()
    assert "hf_TopSecretValue0123456789" not in str(inst.spec)
    refs = [v for v in inst.spec["env"].values() if isinstance(v, dict)]
    assert {"secret_ref": f"secret:{secret.pk}"} in refs


def test_invalid_credentials_type_is_importable():
    assert issubclass(InvalidCredentials, Exception)

"""The pod page's Logs card (issue 15, ux-expectations C): read from the provider on demand,
scrubbed of secrets, escaped and size-capped; a provider without a logs API is named; only
members who may see the pod's project get them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from providers.adapters.sandbox import SandboxAdapter
from providers.models import ProviderAccount
from tenants.models import Membership
from tenants.services import membership_remove
from workloads.models import Pod
from workloads.pods import logs as pod_logs_module

from .telemetry_helpers import running_pod


def _logs(client, pod):
    return client.get(reverse("workloads:pod_logs", args=[pod.pk]))


@pytest.mark.django_db
def test_sandbox_logs_load_on_demand(owner_client, tenant, project, owner, sandbox):
    pod = running_pod(tenant, project, owner)
    page = owner_client.get(reverse("workloads:pod_detail", args=[pod.pk])).content.decode()
    assert 'id="pod-logs" hx-preserve="true"' in page and "Load last 200 lines" in page
    assert "Started container" not in page  # nothing is read from the provider until asked
    r = _logs(owner_client, pod)
    assert r.status_code == 200
    html = r.content.decode()
    assert 'id="logs-text"' in html and "Pulling image jupyter/base" in html and "Started container on 2x A10" in html
    assert ">Refresh<" in html


@pytest.mark.django_db
def test_logs_are_scrubbed_escaped_and_capped(owner_client, tenant, project, owner, sandbox, monkeypatch):
    pod = running_pod(tenant, project, owner)
    token = "hf_" + "a1B2c3D4e5F6g7H8i9J0kLmN"
    monkeypatch.setattr(SandboxAdapter, "logs", lambda self, external_id, tail_lines, connection=None:
                        f"HF_TOKEN={token}\nexport password=hunter2hunter2\n<script>alert(1)</script>\n")
    html = _logs(owner_client, pod).content.decode()
    assert token not in html and "hunter2hunter2" not in html and "[REDACTED]" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    monkeypatch.setattr(SandboxAdapter, "logs", lambda self, external_id, tail_lines, connection=None:
                        "".join(f"line {i} " + "x" * 500 + "\n" for i in range(1000)))
    capped = pod_logs_module.pod_logs(Pod.objects.select_related("provider_account").get(pk=pod.pk))
    assert capped.truncated and len(capped.text) <= pod_logs_module.MAX_CHARS
    assert capped.text.startswith("line ") and capped.text.endswith("line 999 " + "x" * 500 + "\n")
    assert "Only the end is shown" in _logs(owner_client, pod).content.decode()


@pytest.mark.django_db
def test_a_provider_without_a_logs_api_is_named_and_points_to_ssh(owner_client, tenant, project, owner, sandbox):
    pod = running_pod(tenant, project, owner)
    lambda_account = ProviderAccount.objects.create(tenant=tenant, kind="lambda", name="Lambda main",
                                                    credentials={"api_key": "secret_lambda_key_123456"})
    Pod.objects.filter(pk=pod.pk).update(provider_account=lambda_account)
    page = owner_client.get(reverse("workloads:pod_detail", args=[pod.pk])).content.decode()
    card = page[page.index('id="pod-logs"'):]
    assert 'id="logs-unsupported"' in card and "Lambda Cloud has no API for a pod" in card and "Connect (SSH)" in card, card[:600]
    assert "Load last 200 lines" not in card
    html = _logs(owner_client, pod).content.decode()
    assert "Lambda" in html and "Lambda Cloud has no API for a pod" in html and "Connect (SSH)" in html


@pytest.mark.django_db
def test_logs_only_for_members_of_the_pods_organization(client, tenant, project, owner, developer, outsider, sandbox):
    # every member may view every project's pods (per-project grants cover provisioning and spend,
    # not viewing); what takes the pod away is another organization or a revoked membership
    pod = running_pod(tenant, project, owner)
    client.force_login(developer)
    assert _logs(client, pod).status_code == 200
    membership_remove(membership=Membership.objects.get(tenant=tenant, user=developer))
    assert _logs(client, pod).status_code == 404
    client.force_login(outsider)  # another organization's member
    assert _logs(client, pod).status_code == 404
    client.logout()
    assert _logs(client, pod).status_code == 302

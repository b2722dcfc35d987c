"""The pod page's Connect card: live details while running, none once the pod ended."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from provisioner import clock
from workloads.models import Pod, PodState

from .telemetry_helpers import running_pod

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
CONNECTION = {"host": "203.0.113.7", "ssh": "ssh -p 2222 root@203.0.113.7", "urls": {"8000": "https://pod.example/8000"}}


def _page(client, pod):
    return client.get(reverse("workloads:pod_detail", args=[pod.pk])).content.decode()


@pytest.mark.django_db
def test_running_pod_shows_ssh_urls_and_a_vscode_remote_link(owner_client, tenant, project, owner, sandbox):
    with clock.frozen(T0):
        pod = running_pod(tenant, project, owner)
        Pod.objects.filter(pk=pod.pk).update(connection=CONNECTION)
        html = _page(owner_client, pod)
    assert 'id="conn-ssh"' in html and "https://pod.example/8000" in html
    assert 'href="vscode://vscode-remote/ssh-remote+root@203.0.113.7:2222/root"' in html
    assert "Cost so far" in html
    assert "{#" not in html and "#}" not in html  # a two-line {# #} comment used to print on the page


@pytest.mark.django_db
@pytest.mark.parametrize("state", [PodState.TERMINATED, PodState.FAILED, PodState.INTERRUPTED])
def test_ended_pod_shows_final_cost_and_no_connection_details(owner_client, tenant, project, owner, sandbox, state):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        Pod.objects.filter(pk=pod.pk).update(connection=CONNECTION)
        advance(minutes=30)
        Pod.objects.filter(pk=pod.pk).update(state=state, ended_at=clock.now())
        html = _page(owner_client, pod)
    assert "Final cost" in html and "Cost so far" not in html
    for gone in ('id="conn-ssh"', "https://pod.example/8000", "vscode://", ">Copy<"):
        assert gone not in html, gone
    assert 'id="conn-gone"' in html


@pytest.mark.django_db
def test_a_providers_note_on_reaching_the_pod_is_shown(owner_client, tenant, project, owner, sandbox):
    """Azure without allowed SSH sources: the page says SSH is closed and how to open it."""
    note = 'SSH (port 22) is closed: add your address to the Azure account\'s "SSH allowed from" setting'
    with clock.frozen(T0):
        pod = running_pod(tenant, project, owner)
        Pod.objects.filter(pk=pod.pk).update(connection={**CONNECTION, "note": note})
        html = _page(owner_client, pod)
    assert 'id="conn-note"' in html and "SSH allowed from" in html
